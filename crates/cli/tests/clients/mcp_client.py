"""filedock's MCP server driven by the official MCP Python SDK (`mcp` from PyPI).

    python mcp_client.py BASE_URL KEY OTHER_PROJECT_KEY LIMITED_PROJECT_KEY

Connects over Streamable HTTP twice (the initialize handshake, and the SDK's automatic
negotiation), lists the tools, calls every tool, reads resources, and checks the refusals a model
must be able to act on: a wrong key, another project's file, a too-large upload, a type that does
not match, a rate-limited call, a refused URL, a reused idempotency key. Any failed check raises;
the last line is "ok: N checks".
"""

import asyncio
import base64
import hashlib
import http.server
import sys
import threading

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

BASE, KEY, OTHER, LIMITED = sys.argv[1:5]
MCP = BASE + "/mcp"
checks = 0


def check(cond, what):
    global checks
    if not cond:
        raise AssertionError(what)
    checks += 1


def client(key, mode="legacy"):
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30)
    return Client(streamable_http_client(MCP, http_client=http), mode=mode, cache=None)


def ok(result, what):
    check(not result.is_error, f"{what}: {result.structured_content or result.content}")
    return result.structured_content


def refused(result, code, what):
    check(result.is_error, f"{what}: expected a refusal, got {result.structured_content}")
    got = (result.structured_content or {}).get("error", {}).get("code")
    check(got == code, f"{what}: expected {code}, got {got}: {result.structured_content}")
    return result.structured_content["error"]["message"]


# A source for upload_from_url, on 127.0.0.1 (opened for the test by `[fetch] allow`).
SOURCE = bytes(range(256)) * 4200  # just over 1 MiB: a resource read answers it with a link


class Source(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(SOURCE)))
        self.end_headers()
        self.wfile.write(SOURCE)

    def log_message(self, *args):
        pass


async def every_tool(c):
    tools = {t.name: t for t in (await c.list_tools()).tools}
    expected = {"upload_file", "upload_from_url", "list_files", "get_file", "create_link", "delete_file",
                "read_file_text", "run_workflow", "get_task_result"}
    check(set(tools) == expected, f"tools: {sorted(tools)}")
    for t in tools.values():
        check(len(t.description or "") > 40, f"{t.name} has a description for a model")
        check(t.input_schema.get("type") == "object", f"{t.name} has a JSON schema")
    check("idempotency_key" in tools["upload_file"].input_schema["properties"], "upload_file takes a key")

    # upload_file: text, and base64.
    text = "filedock über alles — 文件\n" * 2000
    f = ok(await c.call_tool("upload_file", {"name": "notes.txt", "content": text}), "upload text")
    check(f["status"] == "ready" and f["sha256"] == hashlib.sha256(text.encode()).hexdigest(), f"stored: {f}")
    gbk = "这是一个用GBK编码的文件。\n" * 300
    g = ok(await c.call_tool("upload_file", {"name": "gbk.txt", "encoding": "base64",
                                             "content": base64.b64encode(gbk.encode("gbk")).decode()}), "upload gbk")
    png = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
    p = ok(await c.call_tool("upload_file", {"name": "dot.png", "encoding": "base64",
                                             "content": base64.b64encode(png).decode()}), "upload png")
    check(p["content_type"] == "image/png", f"png type: {p}")

    # list_files, get_file (and its link), create_link.
    listed = ok(await c.call_tool("list_files", {"limit": 100}), "list")
    check({f["id"], g["id"], p["id"]} <= {x["id"] for x in listed["files"]}, "list shows the uploads")
    page = ok(await c.call_tool("list_files", {"limit": 1}), "list page")
    check(len(page["files"]) == 1 and page["next_cursor"], "paged")
    got = ok(await c.call_tool("get_file", {"id": p["id"]}), "get")
    async with httpx2.AsyncClient() as h:
        check((await h.get(got["download_url"])).content == png, "the download link serves the bytes")
        link = ok(await c.call_tool("create_link", {"id": p["id"], "ttl_seconds": 120}), "link")
        check((await h.get(link["url"])).content == png, "the link serves the bytes")

    # read_file_text: pages that add up to the text, in any charset.
    pieces, offset = [], 0
    while offset is not None:
        pg = ok(await c.call_tool("read_file_text", {"id": f["id"], "offset": offset, "length": 10000}), "read")
        check(pg["chars"] <= 10000, "bounded page")
        pieces.append(pg["text"])
        offset = pg.get("next_offset")
    check("".join(pieces) == text, "pages add up to the text")
    pg = ok(await c.call_tool("read_file_text", {"id": g["id"], "length": 100000}), "read gbk")
    check(pg["text"] == gbk and pg["charset"] in ("gbk", "gb18030"), f"gbk decoded: {pg['charset']}")
    check(pg["chars"] <= 32768 or pg["text"] == gbk, "at most 32768 characters per call")
    refused(await c.call_tool("read_file_text", {"id": p["id"]}), "unsupported_type", "read a png as text")

    # upload_from_url: fetched and checked; a refused address is a tool error.
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Source)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}/data/blob.bin?sig=secret"
    u = ok(await c.call_tool("upload_from_url", {"url": url}), "from url")
    check(u["sha256"] == hashlib.sha256(SOURCE).hexdigest() and u["name"] == "blob.bin", f"fetched: {u}")
    check(u["origin"] == url.split("?")[0], "the origin is recorded without its query")
    refused(await c.call_tool("upload_from_url", {"url": "http://169.254.169.254/latest/meta-data/"}),
            "url_refused", "metadata address")
    refused(await c.call_tool("upload_from_url", {"url": "file:///etc/passwd"}), "url_refused", "file URL")
    srv.shutdown()

    # Refusals name the rule: too large (the policy's 2 MiB), a type that does not match.
    big = base64.b64encode(b"\0" * (3 * 1024 * 1024)).decode()
    refused(await c.call_tool("upload_file", {"name": "big.bin", "encoding": "base64", "content": big}),
            "too_large", "over the policy")
    refused(await c.call_tool("upload_file", {"name": "fake.pdf", "content": "not a pdf"}),
            "unsupported_type", "type")
    refused(await c.call_tool("upload_file", {"name": "x.txt", "encoding": "base64", "content": "!!"}),
            "invalid_request", "bad base64")

    # Idempotency: one file for two calls with a key; the key with other arguments is refused.
    a = ok(await c.call_tool("upload_file", {"name": "once.txt", "content": "once", "idempotency_key": "k1"}), "once")
    b = ok(await c.call_tool("upload_file", {"name": "once.txt", "content": "once", "idempotency_key": "k1"}), "again")
    check(a["id"] == b["id"], "the retry got the first file")
    refused(await c.call_tool("upload_file", {"name": "once.txt", "content": "twice", "idempotency_key": "k1"}),
            "idempotency_key_reused", "key reused")
    names = [x["name"] for x in ok(await c.call_tool("list_files", {"limit": 100}), "list")["files"]]
    check(names.count("once.txt") == 1, "one file")

    # Workflows: run (retried with a key: one task), result.
    run = {"workflow": "echo", "parameters": {"text": "hi", "doc": p["key"]}, "idempotency_key": "run-1"}
    t1 = ok(await c.call_tool("run_workflow", run), "run")
    t2 = ok(await c.call_tool("run_workflow", run), "run again")
    check(t1["task_id"] == t2["task_id"], "one task")
    res = ok(await c.call_tool("get_task_result", {"task_id": t1["task_id"]}), "result")
    check(res["status"] == "queued", f"queued: {res}")
    msg = refused(await c.call_tool("run_workflow", {"workflow": "echo", "parameters": {"txt": "hi"}}),
                  "invalid_request", "bad parameter")
    check("txt" in msg or "text" in msg, f"the parameter is named: {msg}")

    # Resources: listed, read as text, as a blob, and as a link when large.
    res = await c.list_resources()
    uris = {r.uri for r in res.resources}
    check(f"filedock://files/{p['id']}" in uris, "files are resources")
    body = (await c.read_resource(f"filedock://files/{g['id']}")).contents[0]
    check(getattr(body, "text", None) == gbk, "a text resource is its decoded text")
    body = (await c.read_resource(f"filedock://files/{p['id']}")).contents[0]
    check(base64.b64decode(body.blob) == png, "a binary resource is a blob")
    body = (await c.read_resource(f"filedock://files/{u['id']}")).contents[0]
    check(body.mime_type == "text/uri-list" and body.text.startswith("http"), "a large resource is a link")

    # delete_file; then the file is gone.
    ok(await c.call_tool("delete_file", {"id": a["id"]}), "delete")
    refused(await c.call_tool("get_file", {"id": a["id"]}), "not_found", "deleted")
    return p["id"]


async def main():
    async with client(KEY) as c:
        pid = await every_tool(c)
    # The SDK's own negotiation (discover, else initialize) reaches the same tools.
    async with client(KEY, mode="auto") as c:
        check(len((await c.list_tools()).tools) == 9, "auto mode")
        ok(await c.call_tool("get_file", {"id": pid}), "auto mode call")
    # Another project's file is not found, as a tool error and as a resource.
    async with client(OTHER) as c:
        refused(await c.call_tool("get_file", {"id": pid}), "not_found", "another project's file")
        refused(await c.call_tool("delete_file", {"id": pid}), "not_found", "another project's delete")
        try:
            await c.read_resource(f"filedock://files/{pid}")
            check(False, "another project's resource was read")
        except Exception as e:  # the protocol's resource-not-found error
            check("not found" in str(e).lower() or "no such" in str(e).lower(), f"resource refusal: {e}")
    # A rate-limited project: refused calls are tool errors naming the rule, with a retry time.
    async with client(LIMITED) as c:
        # At once (burst 2, 1 per second): however slow the machine, most arrive together.
        results = await asyncio.gather(*[c.call_tool("list_files", {}) for _ in range(12)])
        limited = [r for r in results if r.is_error]
        check(limited, "some calls were rate limited")
        for r in limited:
            check(r.structured_content["error"]["code"] == "rate_limited", f"rate: {r.structured_content}")
            check(r.structured_content["error"]["retry_after_secs"] >= 1, "a retry time")
    # A wrong key never reaches the protocol: 401.
    async with httpx2.AsyncClient() as h:
        r = await h.post(MCP, headers={"Authorization": "Bearer sk-0000000000000000nope",
                                       "Accept": "application/json, text/event-stream"},
                         json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        check(r.status_code == 401, f"wrong key: {r.status_code}")
        r = await h.post(MCP, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        check(r.status_code == 401, f"no key: {r.status_code}")
    failed = False
    try:
        async with client("sk-0000000000000000nope") as c:
            await c.list_tools()
    except Exception:
        failed = True
    check(failed, "the SDK cannot connect with a wrong key")
    print(f"ok: {checks} checks")


asyncio.run(main())
