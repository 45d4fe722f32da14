import podium


@podium.service(name="fn-broken", max_workers=1)
def broken_service(model="missing.bin"):
    raise FileNotFoundError(f"cannot load model {model}")


@broken_service.endpoint("/predict")
def predict(x):
    return x
