# A stand-in for the seed's Python handler, for the image-size comparison in bench/run
# only: the seed's design runs a handler like this one under the runpod SDK. It is
# never run and never shipped.
import os
import subprocess

import runpod  # the SDK (pip install runpod); not installable here


def handler(job):
    org = job["input"].get("github_org", os.environ.get("GITHUB_ORG"))
    subprocess.run(["/actions-runner/config.sh", "--url", f"https://github.com/{org}", "--ephemeral", "--unattended"], check=False)
    subprocess.run(["/actions-runner/run.sh"], check=False)
    return {"ok": True}


runpod.serverless.start({"handler": handler})
