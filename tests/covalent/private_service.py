"""A function service deployed and left running, with the real covalent-cloud package, for the
isolation tests. Prints one JSON object: its id and address, a call's answer, and its first
inference key's id."""

import json
import sys

import covalent_cloud as cc


@cc.service(executor=cc.CloudExecutor(memory="12GB"), name="Private Service Of Beta")
def private():
    return {"secret_word": "beta-only"}


@private.endpoint("/word")
def word(secret_word):
    return secret_word


def main():
    d = cc.get_deployment(cc.deploy(private)(), wait=True)
    key = cc.create_inference_api_key(d.function_id)
    json.dump({"id": d.function_id, "address": d.address, "word": d.word(), "key_id": key.key_id}, sys.stdout)


if __name__ == "__main__":
    main()
