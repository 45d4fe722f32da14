"""A service with a short executor time limit, with the real covalent-cloud package: it stops by
itself (INACTIVE) and its routes then say why. Prints one JSON object."""

import json
import sys
import time

import covalent_cloud as cc
import requests


@cc.service(executor=cc.CloudExecutor(memory="12GB", time_limit=3), name="short lived")
def brief():
    return {}


@brief.endpoint("/ping")
def ping():
    return "pong"


def main():
    d = cc.deploy(brief)()
    deadline = time.monotonic() + 120
    while d.status.value != "INACTIVE" and time.monotonic() < deadline:
        time.sleep(0.5)
        d = cc.get_deployment(d.function_id)
    out = {"id": d.function_id, "status": d.status.value}
    try:
        d.ping()
        out["call"] = "answered"
    except requests.HTTPError as exc:
        out["call"] = [exc.response.status_code, exc.response.json()]
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
