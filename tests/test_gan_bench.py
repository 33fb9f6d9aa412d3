from conftest import run_module


def test_bench_prints_every_variant_and_the_ratios():
    result = run_module(
        "gan.bench",
        "--device",
        "cpu",
        "--paths",
        "plain",
        "--g-channels",
        "8",
        "--d-channels",
        "8",
        "--batch-size",
        "4",
        "--n-dis",
        "1",
        "--warmup",
        "1",
        "--repeat",
        "2",
    )
    assert result.returncode == 0, result.stderr
    for variant in ("no mixup", "mixup pixel, rf+ff", "mixup h1+pixel, rf+ff", "mixup h1+pixel, rf"):
        assert f"| plain: {variant} |" in result.stdout
    assert "plain: mixup / no mixup = mixup pixel, rf+ff " in result.stdout
