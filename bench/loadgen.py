"""Load for the throughput bench: pre-signed Twilio SMS webhooks, one customer each.

A burst runs in its own process: `wrk` with a Lua script over a file of pre-signed requests
(installed with apt-get when missing, as devenv does for its packages), or, where wrk cannot be
had, this file run as a script: aiohttp clients posting the same file. Either prints one line
"finished N_NOT_OK" per thread once its share is answered, so the bench knows when the last
answer arrived without waiting for wrk's fixed duration.

    .venv/bin/python bench/loadgen.py --file REQUESTS --url URL --connections 64
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from options import whole
from twilio.request_validator import RequestValidator

PATH = "/webhooks/twilio/messaging"
ACCOUNT_SID = "AC" + "0" * 32
OUR_NUMBER = "+15550000000"

LUA = r"""
-- `id` is a global each thread's setup() sets; the rest is the thread's own
local mine, sent, answered, bad, threads = {}, 0, 0, 0, 1
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end
function init(args)
  threads = tonumber(args[2])
  local i = 0
  for line in io.lines(args[1]) do
    if i % threads == id then
      local sig, body = line:match("^(%S+) (.*)$")
      mine[#mine + 1] = wrk.format("POST", "__PATH__", {
        ["Content-Type"] = "application/x-www-form-urlencoded",
        ["X-Twilio-Signature"] = sig,
      }, body)
    end
    i = i + 1
  end
  -- wrk checks the first thread's script by calling request() once, a request never sent
  if id == 0 then sent = -1 end
end
function request()
  sent = sent + 1
  if sent == 0 then return mine[1] end
  if sent <= #mine then return mine[sent] end
  return wrk.format("GET", "/bench-idle")
end
function delay()
  if sent >= #mine then return 20 end
  return 0
end
function response(status, headers, body)
  if status == 404 then return end
  answered = answered + 1
  if status ~= 200 then bad = bad + 1 end
  if answered == #mine then
    io.write("finished " .. bad .. "\n")
    io.flush()
  end
end
""".replace("__PATH__", PATH)


@dataclass
class Signed:
    sid: str
    body: str
    signature: str


def sign_sms(url: str, token: str, prefix: str, texts: list[str], start: int = 0) -> list[Signed]:
    """One signed webhook per text, each from its own customer (+1 999 then a serial)."""
    validator = RequestValidator(token)
    out = []
    for n, text in enumerate(texts, start):
        sid = f"SM{prefix}{n:0{32 - len(prefix)}d}"
        params = {
            "MessageSid": sid,
            "SmsSid": sid,
            "AccountSid": ACCOUNT_SID,
            "From": f"+1999{n:07d}",
            "To": OUR_NUMBER,
            "Body": text,
            "NumMedia": "0",
        }
        out.append(Signed(sid, urlencode(params), validator.compute_signature(url, params)))
    return out


def write_requests(requests: list[Signed], path: Path) -> None:
    path.write_text("".join(f"{r.signature} {r.body}\n" for r in requests))


def ensure_wrk() -> str | None:
    """wrk's path, installing the Debian package first when it is missing and we may."""
    found = shutil.which("wrk")
    if found or os.environ.get("BENCH_NO_WRK") or not shutil.which("apt-get"):
        return None if os.environ.get("BENCH_NO_WRK") else found
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    quiet = {"env": env, "capture_output": True, "check": False}
    subprocess.run([*sudo, "apt-get", "update", "-qq"], **quiet)  # type: ignore[call-overload]
    subprocess.run(  # type: ignore[call-overload]
        [*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends", "wrk"], **quiet
    )
    return shutil.which("wrk")


def burst_command(wrk: str | None, file: Path, base_url: str, connections: int) -> list[str]:
    """The load generator's command line: wrk when there is one, else this script."""
    if wrk is None:
        return [sys.executable, __file__, "--file", str(file), "--url", base_url + PATH]
    threads = 2
    script = file.with_suffix(".lua")
    script.write_text(LUA)
    return [
        wrk,
        f"-t{threads}",
        f"-c{max(connections, threads)}",
        "-d600s",
        "--timeout",
        "30s",
        "-s",
        str(script),
        base_url,
        "--",
        str(file),
        str(threads),
    ]


def threads_of(command: list[str]) -> int:
    return int(command[-1]) if Path(command[0]).name == "wrk" else 1


async def _post_all(lines: list[str], url: str, connections: int) -> None:
    import aiohttp

    bad = 0
    queue = iter(lines)

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal bad
        for line in queue:
            signature, body = line.split(" ", 1)
            headers = {
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": signature,
            }
            async with session.post(url, data=body.encode(), headers=headers) as resp:
                await resp.read()
                bad += resp.status != 200

    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(connections)))
    print(f"finished {bad}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--file", type=Path, required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--connections", type=whole(1, 10_000), default=64)
    args = parser.parse_args()
    asyncio.run(_post_all(args.file.read_text().splitlines(), args.url, args.connections))


if __name__ == "__main__":
    main()
