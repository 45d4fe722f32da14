import podium


@podium.service(name="broken")
def init():
    raise RuntimeError("model weights not found at /models/x")


@init.endpoint("/x")
def x():
    return 1
