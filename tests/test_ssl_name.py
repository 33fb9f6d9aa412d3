"""`ssl/` shadows the standard TLS module from the repository root; it must still provide it."""

from conftest import run_module, run_python


def test_standard_ssl_and_network_modules_work_from_repo_root():
    code = (
        "import ssl; ctx = ssl.create_default_context(); assert ctx.verify_mode == ssl.CERT_REQUIRED\n"
        "assert ssl.__file__.endswith('ssl/__init__.py')  # our package was the one imported\n"
        "import urllib.request, http.client, asyncio, torch, torch_fidelity\n"
        "import ssl.train\n"
        "print('ok')"
    )
    result = run_python("-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_pip_runs_from_repo_root():
    result = run_module("pip", "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("pip ")


def test_ssl_train_help():
    result = run_module("ssl.train", "--help")
    assert result.returncode == 0, result.stderr
    assert "--labels" in result.stdout and "--resume" in result.stdout
