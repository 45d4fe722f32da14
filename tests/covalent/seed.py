"""The seed's function service (Covalent Cloud docs, "Deploying Standalone Function Services" and
"Interacting with Service Endpoints"), run unchanged with the real covalent-cloud package.

Run with the covalent venv's python; COVALENT_CLOUD_DISPATCHER_URI/_PORT point at Podium and
COVALENT_CLOUD_AUTH__API_KEY is a Podium key. Prints one JSON object of what the client saw.
"""

import asyncio
import json
import sys

import covalent_cloud as cc

service_executor = cc.CloudExecutor(env="my-env", num_cpus=4, memory="12GB")


@cc.service(executor=service_executor, name="My First Function Service")
def example_service(message="Hello, world!"):
    items = (1, 5, "foo")

    return {"message": message, "items": items}


@example_service.endpoint("/hello")
def hello(message, number=42):
    return " ".join([message, f"My favorite number is {number}"])


@example_service.endpoint("/stream", streaming=True)
def stream(message, items):
    yield f"{message}\n"
    yield f"Items: {' '.join(map(str, items))}\n"
    yield "Done streaming\n"


async def async_calls(client):
    answer = await client.async_hello(number=7)
    return answer


def main():
    client = cc.deploy(example_service)()
    out = {
        "status_at_deploy": client.status.value,
        "id": client.function_id,
        "address": client.address,
        "token": client.token,
    }

    example_client = cc.get_deployment(client, wait=True)
    out["status"] = example_client.status.value
    out["hello"] = example_client.hello()
    out["hello_1867"] = example_client.hello(number=1867)
    out["stream"] = b"".join(example_client.stream()).decode()
    out["stream_covalent"] = b"".join(example_client.stream(message="Hello, Covalent!")).decode()
    out["stream_items"] = len(list(example_client.stream()))
    out["async_hello"] = asyncio.run(async_calls(example_client))

    again = cc.get_deployment(client.function_id)
    out["again"] = {
        "id": again.function_id,
        "name": again.name,
        "status": again.status.value,
        "routes": [[r.route, r.method.value, r.streaming] for r in again.routes],
    }
    out["info_status"] = example_client.info()["status"]
    listed = cc.list_function_deployments(search="first function", status="ACTIVE")
    out["listed"] = [r.id for r in listed.records]
    out["listed_total"] = listed.metadata.total_count
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
