"""``lens-emotion data list|add``: offline, from a local path and from a 127.0.0.1 server."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
import zipfile

import pandas as pd
import pytest

from lens_emotion.cli import main
from lens_emotion.data import default_data_root, load_crowd_envent, load_sev
from lens_emotion.data.registry import DATASETS, add_dataset, sha256_file


@pytest.fixture
def served(tmp_path):
    """Serve a folder on 127.0.0.1 and yield (folder, base URL)."""
    folder = tmp_path / "www"
    folder.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


def test_default_root_is_env_else_user_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("LENS_EMOTION_DATA", str(tmp_path))
    assert default_data_root() == tmp_path
    monkeypatch.delenv("LENS_EMOTION_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_data_root() == tmp_path / "home" / ".cache" / "lens-emotion" / "data"


def test_data_list_shows_sources_and_presence(tmp_path, capsys):
    assert main(["data", "list", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name, info in DATASETS.items():
        assert f"{name}: missing" in out and info.citation in out and info.source in out
    assert "Troiano" in out and "Computational Linguistics 49(1)" in out
    assert DATASETS["sev"].files[0].sha256 in out


@pytest.mark.integration
def test_data_add_sev_over_http_checks_and_places_it(served, sev_path, tmp_path, capsys):
    folder, url = served
    shutil.copy(sev_path, folder / "sev.jsonl")
    root = tmp_path / "root"
    assert main(["data", "add", "sev", f"{url}/sev.jsonl", "--root", str(root), "--quiet"]) == 0
    placed = root / "sev" / "sev.jsonl"
    assert sha256_file(placed) == DATASETS["sev"].files[0].sha256
    assert len(load_sev(placed)) == len(load_sev(sev_path))
    assert main(["data", "list", "--root", str(root)]) == 0
    assert "sev: present" in capsys.readouterr().out
    assert not [p for p in (root / "sev").iterdir() if p.name != "sev.jsonl"]  # no leftovers


@pytest.mark.integration
def test_data_add_crowd_envent_from_a_local_path_and_the_official_zip(crowd_envent_path, tmp_path):
    root = tmp_path / "root"
    placed = add_dataset("crowd-envent", crowd_envent_path, root, progress=False)
    assert placed == root / "crowd-envent" / "enVent_gen_Data.csv"
    assert len(load_crowd_envent(placed)) == 6600
    # The official distribution is a zip of TSVs: the generation TSV is extracted from it.
    tsv = tmp_path / "crowd-enVent_generation.tsv"
    pd.read_csv(crowd_envent_path, encoding="cp1252").head(40).to_csv(tsv, sep="\t", index=False)
    with zipfile.ZipFile(tmp_path / "crowd-enVent.zip", "w") as archive:
        archive.write(tsv, "corpus/crowd-enVent_generation.tsv")
    placed = add_dataset("crowd-envent", tmp_path / "crowd-enVent.zip", root, progress=False)
    assert placed.name == "crowd-enVent_generation.tsv" and len(load_crowd_envent(placed)) == 40


@pytest.mark.parametrize(
    ("content", "name", "needle"),
    [
        ('{"not": "sev"}\n', "sev.jsonl", "sha256"),  # wrong checksum
        ("hello", "notes.txt", "expects a file named"),
    ],
)
def test_data_add_rejects_bad_files_and_leaves_nothing(tmp_path, capsys, content, name, needle):
    source = tmp_path / name
    source.write_text(content)
    root = tmp_path / "root"
    assert main(["data", "add", "sev", str(source), "--root", str(root)]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1
    assert not (root / "sev" / "sev.jsonl").exists()
    assert not list((root / "sev").iterdir())


def test_data_add_with_mismatch_allowed_still_requires_a_loadable_file(tmp_path, capsys):
    source = tmp_path / "sev.jsonl"
    source.write_text('{"not": "sev"}\n')
    argv = ["data", "add", "sev", str(source), "--root", str(tmp_path / "r")]
    assert main([*argv, "--allow-checksum-mismatch"]) == 2
    assert "does not load as sev" in capsys.readouterr().err


def test_data_add_unreachable_url_is_one_clear_line(tmp_path, capsys):
    argv = ["data", "add", "sev", "http://127.0.0.1:9/sev.jsonl", "--root", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "could not download" in err and len(err.strip().splitlines()) == 1
