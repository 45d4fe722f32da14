import podium


@podium.service(name="answer", max_workers=1)
def init(style="plain"):
    return {"style": style}


@init.endpoint("/answer", default=True)
def answer(question, style):
    env = podium.context.env
    print(f"answering {question!r} with {len(env)} env values")  # a log line under the job's id
    return {"answer": f"{style}: {question}?", "env_names": sorted(env), "env_len": sum(len(v) for v in env.values())}


@init.endpoint("/boom")
def boom(reason="no"):
    raise RuntimeError(f"boom: {reason}")
