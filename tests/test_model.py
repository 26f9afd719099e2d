"""The graph network: shapes, the factorised edge layer, dense-vs-sparse agreement, invariances, scripting
and ONNX export. Model files are tested in test_model_io.py."""

from __future__ import annotations

import pytest
import torch

from coffea_hepfm.model import (
    ClassifierHead,
    EdgeBlock,
    HEPFMClassifier,
    HEPFMNet,
    MulticlassHead,
    MultilabelHead,
    NodeBlock,
    ProjectionHead,
    ScoringModule,
    build_head,
)
from coffea_hepfm.model.bench import fully_connected_edges, iter_batches, model_flops, random_graphs
from coffea_hepfm.model.export import INPUT_NAMES, export_onnx, export_torchscript, has_dynamo_exporter

F_NODE, F_EDGE, F_GLOBAL = 13, 4, 8
ATOL = 2e-5


def graphs(n_events=24, seed=0, zero_events=(0, 5)):
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(5, 16, (n_events,), generator=g)
    for i in zero_events:
        if i < n_events:
            counts[i] = 0
    return random_graphs(n_events, F_NODE, F_EDGE, F_GLOBAL, node_counts=counts, seed=seed)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(1)
    return HEPFMNet(F_NODE, F_EDGE, F_GLOBAL).eval()


@pytest.fixture(scope="module")
def clf(net):
    torch.manual_seed(2)
    return HEPFMClassifier(net, ClassifierHead(2)).eval()


def test_fully_connected_edges():
    ei = fully_connected_edges(torch.tensor([2, 0, 3, 1]))
    assert ei.tolist() == [[0, 1, 2, 2, 3, 3, 4, 4], [1, 0, 3, 4, 2, 4, 2, 3]]
    assert fully_connected_edges(torch.tensor([0, 0])).shape == (2, 0)


def test_shapes(net, clf):
    x, ei, ea, u, batch = inp = graphs()
    assert net.embed(*inp).shape == (24, 64)
    outs = net.layer_outputs(*inp)
    assert len(outs) == net.n_proc_steps + 2
    assert all(o.shape == (24, 64) for o in outs)
    torch.testing.assert_close(outs[-1], net(*inp))
    assert clf(*inp).shape == (24, 2)
    emb = net.embed(*inp)
    for head, n in (
        (MulticlassHead(12), 12),
        (MultilabelHead(6), 6),
        (ProjectionHead(32), 32),
        (ClassifierHead(3), 3),
    ):
        assert head(emb).shape == (24, n)
        assert build_head(head.get_config()).get_config() == head.get_config()
    probs, emb2 = ScoringModule(clf)(*inp)
    assert probs.dtype == torch.float32 and probs.shape == (24, 2)
    torch.testing.assert_close(probs.sum(1), torch.ones(24))
    probs_ml, _ = ScoringModule(HEPFMClassifier(net, MultilabelHead(6)).eval())(*inp)
    assert ((probs_ml > 0) & (probs_ml < 1)).all() and not torch.allclose(probs_ml.sum(1), torch.ones(24))


def test_bad_inputs(net):
    x, ei, ea, u, batch = graphs(4)
    with pytest.raises(ValueError, match=r"x must be \[N, 13\]"):
        net(x[:, :5], ei, ea, u, batch)
    with pytest.raises(ValueError, match="edge_index"):
        net(x, ei[:, :-1], ea, u, batch)
    with pytest.raises(ValueError, match="aggr"):
        HEPFMNet(3, 3, 3, aggr="max")
    with pytest.raises(ValueError, match="head.in_channels"):
        HEPFMClassifier(net, ClassifierHead(2, in_channels=32))
    with pytest.raises(ValueError, match="unknown head kind"):
        build_head({"kind": "regression", "n_outputs": 1})


def test_factorised_equals_concatenation():
    torch.manual_seed(3)
    x, ei, ea, u, batch = graphs(16)
    h = 64
    xh, eh, uh = torch.randn(x.size(0), h), torch.randn(ei.size(1), h), torch.randn(u.size(0), h)
    block = EdgeBlock(h)
    w, b = block.concat_weight()
    cat = torch.cat([eh, xh[ei[0]], xh[ei[1]], uh[batch[ei[0]]]], 1)
    torch.testing.assert_close(
        block(xh, ei, eh, uh, batch), block.tail(torch.nn.functional.linear(cat, w, b)), atol=ATOL, rtol=1e-5
    )
    nblock = NodeBlock(h)
    aggr = torch.randn(x.size(0), h)
    w, b = nblock.concat_weight()
    cat = torch.cat([xh, aggr, uh[batch]], 1)
    torch.testing.assert_close(
        nblock(xh, aggr, uh, batch), nblock.tail(torch.nn.functional.linear(cat, w, b)), atol=ATOL, rtol=1e-5
    )


def _dense_reference(net: HEPFMNet, inp) -> torch.Tensor:
    """Per-event dense computation with concatenated first layers (independent of the sparse code path)."""
    x, ei, ea, u, batch = inp
    lin = torch.nn.functional.linear
    we, be = net.edge_block.concat_weight()
    wn, bn = net.node_block.concat_weight()
    out = []
    for b in range(u.size(0)):
        nodes = (batch == b).nonzero().flatten()
        n = nodes.numel()
        first = int(nodes[0]) if n else 0
        emask = (batch[ei[0]] == b) if ei.size(1) else torch.zeros(0, dtype=torch.bool)
        X = net.node_encoder(x[nodes])
        E = torch.zeros(n, n, net.hidden)
        E[ei[0, emask] - first, ei[1, emask] - first] = net.edge_encoder(ea[emask])
        U = net.global_encoder(u[b : b + 1])
        off = ~torch.eye(n, dtype=torch.bool)
        for _ in range(net.n_proc_steps):
            cat = torch.cat(
                [E, X[:, None].expand(n, n, -1), X[None, :].expand(n, n, -1), U.expand(n, n, -1)], dim=-1
            )
            E = torch.where(off[..., None], E + net.edge_block.tail(lin(cat, we, be)), torch.zeros(()))
            mean = net.aggr == "mean"
            aggr = E.sum(0) / (max(n - 1, 1) if mean else 1)  # over sources i of edges i -> j
            X = X + net.node_block.tail(lin(torch.cat([X, aggr, U.expand(n, -1)], 1), wn, bn))
            node_pool = X.sum(0, keepdim=True) / (max(n, 1) if mean else 1)
            edge_pool = E.sum((0, 1))[None] / (max(n * (n - 1), 1) if mean else 1)
            U = U + net.global_block(U, node_pool, edge_pool)
        out.append(net.decoder(U))
    return torch.cat(out)


@pytest.mark.parametrize("aggr", ["mean", "sum"])
def test_dense_equals_sparse(aggr):
    torch.manual_seed(4)
    net = HEPFMNet(F_NODE, F_EDGE, F_GLOBAL, aggr=aggr).eval()
    inp = graphs(12, seed=4, zero_events=(3,))
    with torch.no_grad():
        torch.testing.assert_close(net(*inp), _dense_reference(net, inp), atol=1e-4, rtol=1e-4)


def test_zero_node_events(net):
    x, ei, ea, u, batch = inp = graphs(10, zero_events=(0, 4, 9))
    emb = net(*inp)
    assert emb.isfinite().all()
    # An empty event's embedding depends only on its globals, the same alone as in a batch.
    empty = (
        torch.zeros(0, F_NODE),
        torch.zeros(2, 0, dtype=torch.long),
        torch.zeros(0, F_EDGE),
        u[[0, 4, 9]],
        torch.zeros(0, dtype=torch.long),
    )
    torch.testing.assert_close(net(*empty), emb[[0, 4, 9]], atol=ATOL, rtol=1e-5)
    assert net(*graphs(1, zero_events=(0,))).shape == (1, 64)


def test_batch_independence(net):
    inp = graphs(9, seed=6)
    full = net(*inp)
    parts = torch.cat([net(*b) for b in iter_batches(inp, 4)])
    torch.testing.assert_close(full, parts, atol=ATOL, rtol=1e-5)


def test_node_permutation_invariance(net):
    x, ei, ea, u, batch = graphs(8, seed=7)
    g = torch.Generator().manual_seed(0)
    # Permute node ids within each event: sort by (event, random key).
    key = batch.double() + torch.rand(x.size(0), generator=g, dtype=torch.float64) * 0.5
    order = torch.argsort(key)  # new position p holds old node order[p]
    new_id = torch.empty_like(order)
    new_id[order] = torch.arange(order.numel())
    assert (batch[order] == batch).all() and not (order == torch.arange(order.numel())).all()
    perm_out = net(x[order], new_id[ei], ea, u, batch)
    torch.testing.assert_close(perm_out, net(x, ei, ea, u, batch), atol=ATOL, rtol=1e-5)


def test_training_gradients():
    torch.manual_seed(8)
    clf = HEPFMClassifier(
        HEPFMNet(F_NODE, F_EDGE, F_GLOBAL, hidden=32, n_proc_steps=2), MulticlassHead(3, 32)
    )
    inp = graphs(16, seed=8)
    loss = torch.nn.functional.cross_entropy(clf(*inp), torch.randint(0, 3, (16,)))
    loss.backward()
    missing = [n for n, p in clf.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing


def test_torchscript_equals_eager(net, clf):
    inp = graphs(20, seed=9)
    scripted = torch.jit.script(clf)
    torch.testing.assert_close(scripted(*inp), clf(*inp))
    for a, b in zip(scripted.layer_outputs(*inp), net.layer_outputs(*inp), strict=True):
        torch.testing.assert_close(a, b)
    scoring = ScoringModule(clf).eval()
    s_probs, s_emb = torch.jit.script(scoring)(*inp)
    probs, emb = scoring(*inp)
    torch.testing.assert_close(s_probs, probs)
    torch.testing.assert_close(s_emb, emb)


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript-exporter", "dynamo-exporter"])
def test_onnx_export_matches(clf, tmp_path, dynamo):
    ort = pytest.importorskip("onnxruntime")
    if dynamo and not has_dynamo_exporter():
        pytest.skip("onnxscript not installed: torch.onnx.export(dynamo=True) unavailable")
    scoring = ScoringModule(clf).eval()
    path = export_onnx(scoring, tmp_path / "model.onnx", dynamo=dynamo)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["probs", "embedding"]
    for inp in (graphs(33, seed=11, zero_events=(2,)), graphs(2, seed=12, zero_events=(0, 1))):
        got = session.run(None, {k: v.numpy() for k, v in zip(INPUT_NAMES, inp, strict=True)})
        want = scoring(*inp)
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(torch.from_numpy(g), w.detach(), atol=1e-4, rtol=1e-4)


def test_torchscript_file_round_trip(clf, tmp_path):
    scoring = ScoringModule(clf).eval()
    loaded = torch.jit.load(str(export_torchscript(scoring, tmp_path / "model.pt")))
    inp = graphs(7, seed=14)
    for got, want in zip(loaded(*inp), scoring(*inp), strict=True):
        torch.testing.assert_close(got, want)


def test_flop_count_matches_torch_counter(clf):
    from torch.utils.flop_counter import FlopCounterMode

    def addmm_flop(self_shape, mat1, mat2, *args, out_shape=None, **kwargs):
        return 2 * mat1[0] * mat1[1] * mat2[1]

    inp = graphs(10, seed=13)
    # The factorised layers accumulate in place (addmm_), which the counter does not map by default.
    counter = FlopCounterMode(display=False, custom_mapping={torch.ops.aten.addmm_: addmm_flop})
    with counter, torch.no_grad():
        clf(*inp)
    x, ei, ea, u, batch = inp
    lins = [(m.in_features, m.out_features) for m in clf.head.modules() if isinstance(m, torch.nn.Linear)]
    flops = model_flops(clf.backbone.get_config(), x.size(0), ei.size(1), u.size(0), lins)
    assert flops["total"] == counter.get_total_flops()
    assert flops["total_concat"] > 1.5 * flops["total"]  # the factorised edge layer saves most edge FLOPs


def test_real_nanoaod_graphs(shared_nanoaod):
    from coffea_hepfm.graph import GraphSpec, build_graphs
    from coffea_hepfm.nanoaod import open_events

    spec = GraphSpec()
    graphs = build_graphs(open_events(shared_nanoaod / "nano_dimuon.root", mode="eager"), spec)
    inp = graphs.to_torch()
    assert len(graphs) > 10 and inp[0].dtype == torch.float32 and inp[1].dtype == torch.int64
    torch.manual_seed(11)
    clf = HEPFMClassifier(
        HEPFMNet(spec.n_node_features, spec.n_edge_features, spec.n_global_features), ClassifierHead(2)
    ).eval()
    with torch.no_grad():
        logits = clf(*inp)
        assert logits.shape == (len(graphs), 2) and logits.isfinite().all()
        torch.testing.assert_close(torch.jit.script(clf)(*inp), logits)
        parts = torch.cat([clf(*b.to_torch()) for b in graphs.iter_batches(7)])
        torch.testing.assert_close(parts, logits, atol=ATOL, rtol=1e-5)
        torch.testing.assert_close(
            clf.backbone(*inp)[:3],
            _dense_reference(clf.backbone, graphs.slice(0, 3).to_torch()),
            atol=1e-4,
            rtol=1e-4,
        )


def test_bench_command_runs(tmp_path):
    import json

    from typer.testing import CliRunner

    from coffea_hepfm.cli import app

    out = tmp_path / "model.json"
    args = ["bench", "model", "--events", "300", "-b", "128", "--seconds", "0.1", "--source", "random"]
    result = CliRunner().invoke(app, [*args, "--backend", "fused", "--backend", "eager", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "events/CPU-s" in result.output and "% of matmul peak" in result.output
    doc = json.loads(out.read_text())
    assert doc["benchmark"] == "model" and doc["command"]
    assert {r["backend"] for r in doc["rows"]} == {"fused", "eager"}
    assert all(r["ev_per_cpu_s"] > 0 and 0 < r["fraction_of_matmul_peak"] for r in doc["rows"])
    assert doc["matmul_peak_gflops"] > 0 and doc["machine"]["cores"] >= 1
