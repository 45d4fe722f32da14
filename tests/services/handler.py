"""A RunPod-style handler: gets the whole job."""


def handler(job):
    if job["input"].get("fail"):
        raise RuntimeError(f"asked to fail: {job['input']['fail']}")
    return {"echo": job["input"], "id": job["id"]}
