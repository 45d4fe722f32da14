"""A service whose initializer fails, with the real covalent-cloud package: the deployment ends
in ERROR with the error and the worker's stderr. Prints one JSON object."""

import json
import sys

import covalent_cloud as cc
import requests


@cc.service(executor=cc.CloudExecutor(memory="12GB"), name="broken model")
def broken(path="/models/none"):
    raise FileNotFoundError(f"no model at {path}")


@broken.endpoint("/predict")
def predict(x=0):
    return x


def main():
    d = cc.get_deployment(cc.deploy(broken)(path="/models/llama"), wait=120)
    out = {"status": d.status.value, "error": d.error, "stderr": d.stderr}
    try:
        d.predict(x=1)
        out["call"] = "answered"
    except requests.HTTPError as exc:
        out["call"] = [exc.response.status_code, exc.response.json()]
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
