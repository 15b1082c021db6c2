"""The build names the Debian package to install when a dependency is missing."""
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def configure(tmp_path, *args, env=None):
    import os
    full = dict(os.environ)
    full.update(env or {})
    return subprocess.run(["cmake", "-S", str(ROOT), "-B", str(tmp_path / "b"), *args],
                          capture_output=True, text=True, env=full, timeout=120)


def test_missing_llhttp_names_node_llhttp(tmp_path):
    p = configure(tmp_path, "-DMW_LLHTTP_DIR=/nonexistent")
    assert p.returncode != 0
    assert "node-llhttp" in p.stderr


def test_missing_pkg_config_module_names_its_package(tmp_path):
    # an empty pkg-config search path makes every module look missing; the
    # first one checked is libuv
    p = configure(tmp_path, env={"PKG_CONFIG_LIBDIR": str(tmp_path), "PKG_CONFIG_PATH": ""})
    assert p.returncode != 0
    assert "libuv1-dev" in p.stderr
