import podium


@podium.service(name="shapes", max_workers=1)
def init():
    return {}


@init.endpoint("/shapes", default=True)
def shapes(label):
    """One output of each JSON shape, for the Laminar clients' tests."""
    return {
        "text": label,
        "chat": [{"role": "user", "content": label}],
        "int": 3,
        "float": 2.5,
        "strings": ["a", "b"],
        "object": {"k": [1, None]},
        "bool": True,
        "null": None,
        "conditioned": {"condition": "c", "value": "v"},
    }
