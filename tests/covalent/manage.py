"""Inference keys and teardown of a deployment, with the real covalent-cloud package.

Usage: manage.py ID. Prints one JSON object: the keys before and after, calls with each key,
the teardown's answer and the status after it.
"""

import json
import sys

import covalent_cloud as cc
import requests


def main(function_id):
    d = cc.get_deployment(function_id)
    out = {"keys_before": [k.key_id for k in cc.list_inference_api_keys(function_id)]}
    new = cc.create_inference_api_key(function_id)
    out["new_key_id"] = new.key_id
    out["keys_after_create"] = [k.key_id for k in cc.list_inference_api_keys(function_id)]
    headers = {"x-api-key": new.key}
    out["with_new_key"] = requests.post(f"{d.address}/hello", json={"number": 5}, headers=headers, timeout=60).json()
    out["deleted"] = cc.delete_inference_api_key(function_id, new.key_id)
    out["deleted_again"] = cc.delete_inference_api_key(function_id, new.key_id)
    gone = requests.post(f"{d.address}/hello", json={}, headers=headers, timeout=60)
    out["with_deleted_key"] = [gone.status_code, gone.json()]
    no_key = requests.post(f"{d.address}/hello", json={}, timeout=60)
    out["without_key"] = [no_key.status_code, no_key.json()]
    out["keys_after_delete"] = [k.key_id for k in cc.list_inference_api_keys(function_id)]
    out["teardown_status"] = d.teardown()["status"]
    out["status_after"] = cc.get_deployment(function_id).status.value
    try:
        d.hello()
        out["call_after_teardown"] = "answered"
    except requests.HTTPError as exc:
        out["call_after_teardown"] = [exc.response.status_code, exc.response.json()]
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
