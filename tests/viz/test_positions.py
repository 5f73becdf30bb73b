"""Position-encoding plots: the plotted data are the POSITION modules' own outputs."""

from __future__ import annotations

import torch

from attnlab.cli.main import main
from attnlab.nn.position import POSITION, alibi_slopes
from attnlab.viz.positions import (
    alibi_data,
    plot_positions,
    rope_data,
    sinusoidal_data,
)

torch.set_num_threads(1)


def test_sinusoidal_rows_are_the_module_encodings():
    data = sinusoidal_data(d_model=16, length=40)
    module = POSITION.build("sinusoidal", d_model=16, n_heads=1, max_seq_len=100)
    torch.testing.assert_close(data.table, module(torch.arange(40)))
    assert data.table.shape == (40, 16)


def test_sinusoidal_similarity_depends_on_the_offset_only():
    data = sinusoidal_data(d_model=32, length=64)
    table = data.table.double()
    torch.testing.assert_close(data.similarity_from_start[5], (table[0] @ table[5]).float())
    assert abs(float(data.similarity_from_start[0]) - 16.0) < 1e-4  # D/2 pairs of sin^2 + cos^2
    n = data.similarity_from_middle.numel()
    torch.testing.assert_close(data.similarity_from_middle, data.similarity_from_start[:n],
                               atol=1e-4, rtol=0)


def test_rope_scores_are_the_module_rotations():
    data = rope_data(head_dim=8, length=20, n_vectors=16, seed=3)
    module = POSITION.build("rope", d_model=8, n_heads=1, max_seq_len=20, head_dim=8)
    ones = torch.ones(1, 1, 20, 8, dtype=torch.float64)
    rotated = module(ones, torch.arange(20))[0, 0]  # (L, Dh)
    torch.testing.assert_close(data.ones, (rotated @ rotated[0]).float())
    assert abs(float(data.ones[0]) - 8.0) < 1e-5  # rotation keeps the norm
    # relative: the score from position 7 to 7 + k equals the score from 0 to k
    assert abs(float(rotated[7] @ rotated[12]) - float(data.ones[5])) < 1e-5
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(16, 8, generator=generator, dtype=torch.float64)
    rx = module(x[:, None, None, :].expand(-1, 1, 20, -1), torch.arange(20))[:, 0]  # (N, L, Dh)
    expected = torch.einsum("nd,nld->nl", rx[:, 0], rx).mean(0)  # (L,)
    torch.testing.assert_close(data.random_mean, expected.float())
    assert data.random_std.shape == (20,) and data.n_vectors == 16


def test_alibi_bias_is_minus_slope_times_distance():
    data = alibi_data(n_heads=8, length=30)
    torch.testing.assert_close(data.slopes, alibi_slopes(8))
    expected = -alibi_slopes(8)[:, None] * torch.arange(30, dtype=torch.float32)  # (H, L)
    torch.testing.assert_close(data.bias, expected)
    assert float(data.slopes[0]) == 0.5 and float(data.slopes[-1]) == 1 / 256


def test_plots_are_written(tmp_path):
    paths = plot_positions(tmp_path, d_model=16, length=24, n_heads=4, n_vectors=8)
    names = sorted(p.name for p in paths)
    assert names == ["alibi.png", "rope.png", "sinusoidal.png", "sinusoidal_similarity.png"]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_end_to_end(tmp_path, capsys):
    out = tmp_path / "pos"
    assert main(["positions", "--out", str(out), "--d-model", "16", "--length", "32",
                 "--n-heads", "4", "--n-vectors", "8"]) == 0
    printed = capsys.readouterr().out.split()
    assert len(printed) == 4 and all((out / name).is_file() for name in
                                     ("sinusoidal.png", "rope.png", "alibi.png"))


def test_cli_odd_width_is_a_clear_error(tmp_path, capsys):
    assert main(["positions", "--out", str(tmp_path), "--d-model", "15"]) == 2
    assert "d_model must be even" in capsys.readouterr().err
