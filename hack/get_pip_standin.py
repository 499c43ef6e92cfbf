# Offline stand-in for the get-pip bootstrap that ansible-test downloads for its venvs.
# It installs pip from the package index (reachable here) and passes pip's arguments through.
import subprocess
import sys

args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(subprocess.call([sys.executable, "-m", "ensurepip", "--upgrade"]) or
         subprocess.call([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "pip==24.2", *args]))
