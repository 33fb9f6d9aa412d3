from conftest import run_module


def test_bench_prints_the_table_and_the_mixup_ratio():
    result = run_module(
        "ssl.bench",
        "--device",
        "cpu",
        "--paths",
        "straightforward,plain",
        "--depth",
        "10",
        "--width",
        "1",
        "--batch-size",
        "8",
        "--warmup",
        "1",
        "--repeat",
        "2",
    )
    assert result.returncode == 0, result.stderr
    for row in ("straightforward: supervised, no mixup", "plain: SSL step, Algorithm 1"):
        assert f"| {row} |" in result.stdout
    assert "plain: manifold mixup / no mixup = " in result.stdout
    assert "plain vs straightforward (Algorithm 1): " in result.stdout


def test_unknown_path_is_a_one_line_error(in_process):
    result = in_process("ssl.bench", "--paths", "turbo")
    assert result.returncode == 2 and "unknown path 'turbo'" in result.stderr
