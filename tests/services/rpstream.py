import podium


@podium.handler(name="rpstream")
def handler(job):
    for i in range(job["input"]["n"]):
        yield {"i": i}
