"""Models on both tasks: champion, history, get and predict; export with a model card whose agreement lists every
row checked; eval of a past champion, its ONNX export and a fresh candidate under its own task."""
from __future__ import annotations

import json

import pytest

from tests.cli_functional.helpers import covers, crowned
from tests.cli_net import Net
from tests.test_cli_e2e import assert_one_line_error

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@covers("model champion", "model history", "model get", "model predict")
def test_model_champion_history_get_predict(net: Net) -> None:
    history = crowned(net, task=0)
    champ = net.json("model", "champion", "--task", "0", *net.node)
    assert champ["round"] >= 1 and champ["miner_address"] == net.keys["miner"]
    lines = net.run("model", "history", *net.node).stdout.splitlines()
    assert lines[0].startswith("round 0  task 0") and "(genesis)" in lines[0]
    assert [h["hash"] for h in net.json("model", "history", "--task", "0", *net.node)][1:len(history) + 1] == \
        [h["hash"] for h in history]      # (the chain goes on meanwhile: more may follow)
    # the 16-hex prefix `model history` prints names the model (item 8)
    rec = history[0]
    prefix = rec["model_hash"][:16]
    assert prefix + "…" in "\n".join(lines)
    got = net.json("model", "get", prefix, "--out", "m.popmodel", *net.node)
    assert got["hash"] == rec["model_hash"] and got["bytes"] == (net.dir / "m.popmodel").stat().st_size
    net.run("model", "get", prefix, "--out", "m.raw", "--raw", *net.node)
    from chain.block import model_hash
    assert model_hash((net.dir / "m.raw").read_bytes()).hex() == rec["model_hash"]
    assert_one_line_error(net.run("model", "get", "abc", "--out", "x", *net.node, check=False), "not a model hash")
    assert_one_line_error(net.run("model", "get", "abcdef01", "--out", "x", *net.node, check=False), "no model")
    # a digits champion (64 features, 10 classes) downloads and predicts under its own task (item 2)
    t1 = net.json("model", "get", "champion", "--task", "1", "--out", "d.popmodel", *net.node)
    assert t1["task_id"] == 1
    pred = net.json("model", "predict", *net.node, "--input", "t1/holdout.csv", "--out", "y.csv")
    assert pred["task_id"] == 1 and 0.5 < pred["accuracy"] <= 1
    assert (net.dir / "y.csv").read_text().splitlines()[0] == "prediction"
    local = net.json("model", "predict", "--model", "d.popmodel", "--input", "t1/holdout.csv", "--label-column",
                     "label", "--node", "http://127.0.0.1:9")   # the node is never asked
    assert local["accuracy"] == pred["accuracy"]
    on0 = net.json("model", "predict", "--task", "0", "--input", "chain/holdout.csv", *net.node)
    assert on0["task_id"] == 0 and "predictions by" in net.run("model", "predict", "--model", "m.popmodel",
                                                               "--input", "chain/holdout.csv").stdout
    assert_one_line_error(net.run("model", "predict", "--model", "m.raw", "--input", "chain/holdout.csv",
                                  check=False), "not a .popmodel")
    assert "original units" in " ".join(net.run("model", "predict", "--help").stdout.split())


@covers("model export")
def test_model_export_card_states_every_row_checked(net: Net) -> None:
    rec = crowned(net, task=1)[-1]
    before = [k["round"] for k in net.get("/api/tasks/1")["revealed"]]
    out = net.json("model", "export", rec["model_hash"][:12], "--format", "onnx", "--out", "d.onnx",
                   "--check-csv", "t1/holdout.csv", *net.node)
    card = json.loads((net.dir / "d.card.json").read_text())
    assert out["task_id"] == card["task_id"] == 1 and card["task"]["n_features"] == 64
    agree = card["onnx"]["agreement"]
    # exactly the rows checked (item 5): every public training row, every revealed shard of the task, the CSV
    task = net.get("/api/tasks/1")
    revealed = [k["round"] for k in task["revealed"]]
    sources = [c["source"] for c in agree["checked"]]
    assert sources[0] == "public training rows" and sources[-1] == "t1/holdout.csv"
    # the chain lives on while the export runs (issue 21: rounds that crown nothing still have blocks): every
    # shard revealed before it started was checked, and only revealed shards, in order
    checked = [int(s.split()[1]) for s in sources[1:-1]]
    assert checked == revealed[:len(checked)] and len(checked) >= len(before)
    holdout_rows = len((net.dir / "t1/holdout.csv").read_text().splitlines()) - 1
    assert agree["checked"][-1]["rows"] == holdout_rows and agree["every_row"] is True
    assert agree["rows"] == agree["same"] == sum(c["rows"] for c in agree["checked"])
    assert all(c["rows"] == c["same"] for c in agree["checked"])
    for k in ("chain_id", "genesis_hash", "round", "block_hash", "miner_address", "shard_accuracy", "test"):
        assert card[k] is not None, k
    assert (card["round"], card["block_hash"], card["b"], card["c"]) == (rec["round"], rec["hash"], rec["b"], rec["c"])
    import hashlib
    assert card["file"]["sha256"] == hashlib.sha256((net.dir / "d.onnx").read_bytes()).hexdigest()
    via_onnx = net.json("model", "predict", "--model", "d.onnx", "--input", "t1/holdout.csv", "--out", "o.csv")
    net.run("model", "get", rec["model_hash"], "--out", "r.popmodel", *net.node)
    via_pop = net.json("model", "predict", "--model", "r.popmodel", "--input", "t1/holdout.csv", "--out", "p.csv")
    assert (net.dir / "o.csv").read_text() == (net.dir / "p.csv").read_text()
    assert via_onnx["accuracy"] == via_pop["accuracy"]
    human = net.run("model", "export", "champion", "--task", "0", "--format", "popmodel", "--out", "e.popmodel",
                    *net.node).stdout
    assert "model card" in human and "task 0 (synthetic)" in human and (net.dir / "e.card.json").exists()
    assert_one_line_error(net.run("model", "export", "00" * 32, "--out", "z.onnx", *net.node, check=False), "no model")


@covers("model eval")
def test_model_eval_on_each_task_onnx_included(net: Net) -> None:
    rec = crowned(net, task=0)[-1]
    net.run("model", "get", rec["model_hash"], "--out", "past.popmodel", *net.node)
    past = net.run("model", "eval", "past.popmodel", "--shards", "2", "--json", *net.node, check=False)
    res = json.loads(past.stdout)
    assert past.returncode == 4 and res["would_pass"] is False and res["duplicate_of_a_champion"] is True
    assert res["task_id"] == 0 and len(res["shards"]) == 2 and res["next_round"] > rec["round"]
    # an exported ONNX file evaluates too (item 14), under its own task, and "would not pass" exits 4
    net.run("model", "export", rec["model_hash"], "--out", "past.onnx", *net.node)
    for _ in range(5):      # the same b and c as the integer model, on the same shard and champion
        onnx = net.run("model", "eval", "past.onnx", "--json", *net.node, check=False)
        via = json.loads(onnx.stdout)
        res = json.loads(net.run("model", "eval", "past.popmodel", "--json", *net.node, check=False).stdout)
        if (via["champion"], via["shards"][-1]["shard_round"]) == (res["champion"], res["shards"][-1]["shard_round"]):
            break           # else a round ended between the two: read again
    assert onnx.returncode == 4 and via["via"] == "onnxruntime" and via["task_id"] == 0
    assert via["shards"][-1]["b"] == res["shards"][-1]["b"] and via["shards"][-1]["c"] == res["shards"][-1]["c"]
    # a fresh candidate for the digits task, as raw bytes: --task says which task it competes on
    from consensus.protocol.genesis import load_genesis
    from ml.model import encode_model
    from ml.shards import PublicTask
    from ml.training import train_candidate
    g = load_genesis((net.dir / "chain/genesis.bin").read_bytes())
    pkg = PublicTask.decode(bytes.fromhex(net.get("/api/tasks/1?package=1")["package"]))
    (net.dir / "cand.raw").write_bytes(encode_model(train_candidate("linear", pkg.training, seed=5, caps=g.model_caps)))
    cand = net.run("model", "eval", "cand.raw", "--task", "1", "--json", *net.node, check=False)
    got = json.loads(cand.stdout)
    from consensus.protocol.stats import crowns
    s = got["shards"][-1]
    assert got["task_id"] == 1 and got["duplicate_of_a_champion"] is False
    assert got["would_pass"] == (crowns(s["b"], s["c"], got["assumed_entries"], s["rows"], g.params.alpha,
                                        g.params.min_gain_bp) and got["task_status"] == "open")
    assert cand.returncode == (0 if got["would_pass"] else 4)
    assert "would pass on the latest revealed shard" in net.run("model", "eval", "cand.raw", "--task", "1",
                                                                *net.node, check=False).stdout
    (net.dir / "junk.raw").write_bytes(b"\x93junk")
    assert_one_line_error(net.run("model", "eval", "junk.raw", *net.node, check=False), "model")
    assert_one_line_error(net.run("model", "eval", "cand.raw", "--shards", "0", *net.node, check=False), "--shards")
