"""An image generator with the ComfyUI worker's request shape, drawing with Pillow instead of a model.

Input::

    {"workflow": {"prompt": "a red fox", "width": 512, "height": 512, "count": 1, "seed": 0},
     "tobase64": true, "tobucket": false}

Output: ``{"files": [presigned URLs], "datas": {file name: base64 PNG}}``. ``files`` is filled when
``tobucket`` is true (the request must then carry ``s3Config``: the caller's bucket), ``datas`` when
``tobase64`` is. Bad input is answered with ``{"error": "..."}``, which RunPod and Podium report as a
failed job. The same prompt and seed always give the same pictures.
"""

import base64
import random
import tempfile
import textwrap
from pathlib import Path

import runpod
from PIL import Image, ImageDraw

from podium.errors import PodiumError
from podium.storage import upload_files

MAX_SIDE = 2048
MAX_COUNT = 8
#: Workflow keys: (type, default or None when required, (low, high) for numbers).
WORKFLOW = {
    "prompt": (str, None, None),
    "width": (int, 512, (16, MAX_SIDE)),
    "height": (int, 512, (16, MAX_SIDE)),
    "count": (int, 1, (1, MAX_COUNT)),
    "seed": (int, 0, (0, 2**32 - 1)),
}


def parse_workflow(workflow):
    """The workflow with defaults filled in, or an error message for the caller."""
    if not isinstance(workflow, dict):
        return None, "workflow must be an object with " + ", ".join(WORKFLOW)
    unknown = sorted(set(workflow) - set(WORKFLOW))
    if unknown:
        return None, "unknown workflow keys: " + ", ".join(unknown)
    out = {}
    for key, (kind, default, bounds) in WORKFLOW.items():
        value = workflow.get(key, default)
        if value is None:
            return None, f"workflow.{key} is required"
        # bool is an int subclass, but `"width": true` is a mistake, not a size.
        if not isinstance(value, kind) or isinstance(value, bool):
            return None, f"workflow.{key} must be {'a string' if kind is str else 'an integer'}"
        if bounds and not bounds[0] <= value <= bounds[1]:
            return None, f"workflow.{key} must be between {bounds[0]} and {bounds[1]}"
        out[key] = value
    if not out["prompt"].strip():
        return None, "workflow.prompt must not be empty"
    return out, None


def draw(prompt, width, height, seed, index):
    """A two-colour gradient with the prompt written on it; the same arguments give the same image."""
    rng = random.Random(f"{seed}:{index}:{prompt}")
    top, bottom = (tuple(rng.randrange(256) for _ in range(3)) for _ in range(2))
    size = (width, height)
    mask = Image.linear_gradient("L").resize(size)
    image = Image.composite(Image.new("RGB", size, bottom), Image.new("RGB", size, top), mask)
    ink = (255, 255, 255) if sum(top) < 384 else (0, 0, 0)
    text = textwrap.fill(prompt, width=max(8, width // 7)) + f"\n#{index + 1} seed {seed}"
    ImageDraw.Draw(image).multiline_text((8, 8), text, fill=ink)
    return image


def handler(job):
    job_input = job.get("input")
    if not isinstance(job_input, dict):
        return {"error": "input must be an object with workflow, tobase64, tobucket"}
    workflow, error = parse_workflow(job_input.get("workflow"))
    if error:
        return {"error": error}
    tobase64, tobucket = job_input.get("tobase64", False), job_input.get("tobucket", False)
    if not isinstance(tobase64, bool) or not isinstance(tobucket, bool):
        return {"error": "tobase64 and tobucket must be true or false"}
    if not (tobase64 or tobucket):
        return {"error": "nothing to return: set tobase64 and/or tobucket"}
    if tobucket and not job.get("s3Config"):
        return {"error": "tobucket needs s3Config in the request"}

    files, datas = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for index in range(workflow["count"]):
            path = Path(tmp) / f"image_{index + 1:03d}.png"
            image = draw(workflow["prompt"], workflow["width"], workflow["height"], workflow["seed"], index)
            image.save(path)
            paths.append(path)
        if tobase64:
            datas = {p.name: base64.b64encode(p.read_bytes()).decode("ascii") for p in paths}
        if tobucket:
            try:
                files = upload_files(job, paths)
            except PodiumError as exc:  # its message never holds the bucket secret
                return {"error": f"upload failed: {exc}"}
    return {"files": files, "datas": datas}


if __name__ == "__main__":
    runpod.serverless.start({"handler": handler})
