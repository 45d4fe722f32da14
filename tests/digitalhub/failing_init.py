"""A serve function whose init fails: the run must end in ERROR with the reason."""


def init(context, model_path="missing.bin"):
    raise FileNotFoundError(f"no model at {model_path}")


def serve(context, event):
    return "unreachable"
