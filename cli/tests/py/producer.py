"""A producer and follower written with nats-py, as a team without Rust would write one
(docs/events.md). It asks weir to take a file it put under incoming/ in the object
store, then follows the upload on the JSON mirror until it is registered or failed.

    python producer.py NATS_URL TOKEN KEY

Prints one JSON object: {"upload_id", "kinds": [...], "terminal": {...}}; exits 1 on
an error reply or a timeout."""

import asyncio
import json
import sys

import nats


async def main(url, token, key):
    nc = await nats.connect(url)
    seen = []
    done = asyncio.get_running_loop().create_future()

    async def on_event(msg):
        event = json.loads(msg.data)
        seen.append(event)
        if event["kind"] in ("dataset_registered", "failed", "upload_aborted") and not done.done():
            done.set_result(event)

    # Follow every upload's events before asking, so none is missed.
    await nc.subscribe("weir-json.upload.>", cb=on_event)
    reply = await nc.request(
        "weir-requests.upload",
        json.dumps({"token": token, "key": key, "label": "From Python", "bad_rows": "reject"}).encode(),
        timeout=10,
    )
    answer = json.loads(reply.data)
    if "error" in answer:
        print(json.dumps(answer))
        sys.exit(1)
    upload = answer["upload_id"]

    async def terminal():
        while True:
            for event in seen:
                if event["subject"].startswith(f"weir.upload.{upload}.") and event["kind"] in (
                    "dataset_registered", "failed", "upload_aborted"):
                    return event
            await asyncio.sleep(0.05)

    end = await asyncio.wait_for(terminal(), timeout=60)
    kinds = [e["kind"] for e in seen if e["subject"].startswith(f"weir.upload.{upload}.")]
    # A bad request gets an error naming the field.
    bad = json.loads((await nc.request(
        "weir-requests.upload", json.dumps({"token": token, "key": "../etc/passwd"}).encode(), timeout=10)).data)
    print(json.dumps({"upload_id": upload, "kinds": kinds, "terminal": end, "bad_request": bad}))
    await nc.close()


asyncio.run(main(*sys.argv[1:4]))
