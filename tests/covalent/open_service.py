"""A service deployed with auth=False whose routes use every HTTP method (and a streaming GET),
with the real covalent-cloud package. Prints one JSON object of what the client saw."""

import asyncio
import json
import sys

import covalent_cloud as cc


@cc.service(executor=cc.CloudExecutor(memory="4GB", validate_environment=False), name="open shop", auth=False)
def shop(apples=3):
    return {"stock": {"apple": apples}}


@shop._get("/item")
def item(stock, name="apple"):
    return {"name": name, "count": stock.get(name, 0)}


@shop._put("/item-set")
def item_set(stock, name, count):
    stock[name] = count
    return stock


@shop._patch("/item-add")
def item_add(stock, name, n=1):
    stock[name] = stock.get(name, 0) + n
    return stock


@shop._delete("/item-remove")
def item_remove(stock, name):
    stock.pop(name, None)
    return sorted(stock)


@shop._get("/countdown", streaming=True)
def countdown(n=3):
    for i in range(n, 0, -1):
        yield f"{i}\n"


@shop.endpoint("/whole", streaming=True)
def whole(stock):
    return f"{len(stock)} kinds in stock"


@shop.endpoint("/fail")
def fail(reason="on purpose"):
    raise RuntimeError(reason)


async def streamed(d):
    return [chunk async for chunk in d.async_countdown(n=2)]


def main():
    d = cc.get_deployment(cc.deploy(shop)(apples=5), wait=True)
    out = {"id": d.function_id, "address": d.address, "status": d.status.value, "auth": d.auth}
    out["item"] = d.item()
    out["item_set"] = d.item_set(name="pear", count=2)
    out["item_add"] = d.item_add(name="pear", n=3)
    out["item_remove"] = d.item_remove(name="apple")
    out["item_pear"] = d.item(name="pear")
    out["countdown"] = b"".join(d.countdown()).decode()
    out["async_countdown"] = b"".join(asyncio.run(streamed(d))).decode()
    out["whole"] = b"".join(d.whole()).decode()
    out["methods"] = {r.route: r.method.value for r in d.routes}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
