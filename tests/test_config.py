"""Config and job files: specific errors naming the file and field; secrets only from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from migrator.config import Config, ProviderConfig, load_config, load_job
from migrator.errors import ConfigError
from migrator.log import scrub
from migrator.model import TaskKind


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_no_config_means_embedded_sandboxes() -> None:
    config = load_config(None)
    assert {p.kind for p in config.providers.values()} >= {"dataworks", "emr"}
    assert all(p.sandbox for p in config.providers.values())


def test_credentials_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = write(tmp_path / "c.toml", '[providers.dw]\nkind = "dataworks"\nendpoint = "x"\n')
    with pytest.raises(ConfigError, match="ALIBABA_CLOUD_ACCESS_KEY_ID, which is not set"):
        load_config(cfg)
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "ak")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "very-secret")
    loaded = load_config(cfg).provider("dw")
    assert loaded.access_key_secret is not None
    assert loaded.access_key_secret.get_secret_value() == "very-secret"
    assert "very-secret" not in repr(loaded)
    # masked in log lines from the moment it is loaded, whatever the provider serves (a source)
    assert scrub("signature for very-secret refused") == "signature for *** refused"
    literal = write(
        tmp_path / "l.toml",
        '[providers.dw]\nkind = "dataworks"\n[providers.dw.credentials]\n'
        'access_key_id = "$ALIBABA_CLOUD_ACCESS_KEY_ID"\naccess_key_secret = "oops"\n',
    )
    with pytest.raises(ConfigError, match="access_key_secret must be an environment reference"):
        load_config(literal)


def test_bad_fields_are_named(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", '[providers.x]\nkind = "nope"\nsandbox = true\n')
    with pytest.raises(ConfigError, match=r"c.toml: providers.x.kind: .*unknown kind 'nope'"):
        load_config(cfg)
    with pytest.raises(ConfigError, match="provider 'dw' is not configured"):
        load_config(None).provider("dw")


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('[stat]\npath = "s.db"\n', "stat is not a known key (did you mean 'state'?)"),
        ('[state]\npth = "s.db"\n', "state.pth is not a known key (did you mean 'path'?)"),
        ("[state]\npath = 5\n", "state.path must be a file path (a string)"),
        (
            '[providers.dw]\nkind = "dataworks"\n[providers.dw.credentials]\naccesskey_secret = "$SK"\n',
            "providers.dw.credentials.accesskey_secret is not a known key "
            "(did you mean 'access_key_secret'?)",
        ),
    ],
)
def test_a_misspelt_config_key_is_refused_not_taken_as_its_default(
    tmp_path: Path, text: str, error: str
) -> None:
    """A misspelt [state] put checkpoints in a database nobody configured; a misspelt credential
    used the default environment variable, another account."""
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path / "c.toml", text))
    assert str(caught.value) == f"{tmp_path / 'c.toml'}: {error}"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('[job]\nnmae = "x"\n', "job.nmae is not a known key (did you mean 'name'?)"),
        ('[job]\nmdoe = "sync"\n', "job.mdoe is not a known key (did you mean 'mode'?)"),
        ("[mappings]\n", "mappings is not a known key (known: job, source, target)"),
    ],
)
def test_a_misspelt_job_key_is_refused(tmp_path: Path, text: str, error: str) -> None:
    body = '[source]\npaths = ["a.jsonl"]\n[target]\nprovider = "dataworks"\n'
    with pytest.raises(ConfigError) as caught:
        load_job(write(tmp_path / "j.toml", text + body))
    assert str(caught.value) == f"{tmp_path / 'j.toml'}: {error}"


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ('kind = "inventory"\npaths = ["a.jsonl"]', None),
        ('kind = "emr-export"\npaths = ["dump"]', None),
        ('kind = "live"\nprovider = "emr"', None),
        ('kind = "live"', "source.provider is required"),
        ('kind = "emr-export"', "source.paths is required"),
        ('kind = "ftp"\npaths = ["a"]', "source.kind 'ftp' is not one of"),
    ],
)
def test_source_kinds(tmp_path: Path, source: str, error: str | None) -> None:
    job = write(
        tmp_path / "j.toml", f'[job]\nname = "j"\n[source]\n{source}\n[target]\nprovider = "dataworks"\n'
    )
    if error is None:
        loaded = load_job(job)
        assert all(p.is_absolute() or p.parent == tmp_path for p in loaded.source.paths)
    else:
        with pytest.raises(ConfigError, match=error):
            load_job(job)


def test_the_example_config_is_valid_and_says_what_it_means(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "ak")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "sk")
    config = load_config(Path(__file__).resolve().parent.parent / "config.example.toml")
    prod = config.provider("dataworks-prod")
    assert (prod.edition, prod.limits().read_qps, prod.limits().write_qps) == ("enterprise", 50, 20)
    assert (prod.retry_budget, prod.park_after) == (500, 60)
    assert config.provider("dataworks").sandbox_options.faults.qps is None


def job_with(tmp_path: Path, target: str) -> Path:
    return write(
        tmp_path / "j.toml", f'[job]\nname = "j"\n[source]\npaths = ["a.jsonl"]\n[target]\n{target}\n'
    )


def test_kinds_and_mappings_load_from_the_target_table(tmp_path: Path) -> None:
    job = load_job(
        job_with(
            tmp_path,
            'provider = "dataworks"\n[target.kinds]\npig = "EMR_SPARK_SHELL"\n'
            '[target.mappings]\nstrict = true\nowners = { alice = "1001" }\n'
            '[target.mappings.paths]\n"oss://old/" = "oss://new/"\n',
        )
    )
    assert job.target.kinds == {TaskKind.PIG: "EMR_SPARK_SHELL"}
    assert job.target.mappings.owners == {"alice": "1001"}
    assert job.target.mappings.paths == {"oss://old/": "oss://new/"}
    assert job.target.mappings.strict


@pytest.mark.parametrize(
    ("target", "config", "error"),
    [
        # the provider's kind from its name (no config file), or from the config
        (
            'provider = "emr"\n[target.kinds]\npython = "PYTHON"',
            None,
            "target.kinds: python = 'PYTHON' is not a type emr knows",
        ),
        (
            'provider = "prod"\n[target.kinds]\npython = "PYTHON"',
            "emr",
            "target.kinds: python = 'PYTHON' is not a type emr knows",
        ),
        ('provider = "prod"\n[target.kinds]\npython = "PYTHON3"', None, "is not a type any target knows"),
        (
            'provider = "enos"\n[target.kinds]\nperl = "COMMAND"',
            None,
            "target.kinds: 'perl' is not a task kind",
        ),
        (
            'provider = "enos"\n[target.mappings]\nowners = ["alice"]',
            None,
            "target.mappings.owners: Input should be a valid dictionary",
        ),
        (
            'provider = "enos"\n[target.mappings]\ngroups = {}',
            None,
            "target.mappings.groups: Extra inputs are not permitted",
        ),
        (
            'provider = "enos"\n[target.mappings.users]\nhadoop = ""',
            None,
            "target.mappings.users.hadoop: String should have at least 1 character",
        ),
    ],
)
def test_kinds_and_mappings_errors_name_the_file_and_key(
    tmp_path: Path, target: str, config: str | None, error: str
) -> None:
    path = job_with(tmp_path, target)
    cfg = (
        Config(providers={"prod": ProviderConfig(name="prod", kind=config, sandbox=True)}) if config else None
    )
    with pytest.raises(ConfigError) as caught:
        load_job(path, cfg)
    assert str(caught.value).startswith(f"{path}: ")
    assert error in str(caught.value)


def test_a_kind_override_another_target_knows_passes_when_the_target_kind_is_unknown(tmp_path: Path) -> None:
    job = load_job(job_with(tmp_path, 'provider = "prod"\n[target.kinds]\npython = "PYTHON"'))
    assert job.target.kinds == {TaskKind.PYTHON: "PYTHON"}


def test_the_readmes_kinds_and_mappings_example_is_a_valid_job(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("### Job kinds and mappings", 1)[1]
    example = section.split("```toml\n", 1)[1].split("```", 1)[0]
    path = write(
        tmp_path / "j.toml", f'{example}[source]\npaths = ["a.jsonl"]\n[target]\nprovider = "dataworks"\n'
    )
    target = load_job(path).target
    assert target.kinds == {TaskKind.PIG: "EMR_SPARK_SHELL"}
    assert set(target.mappings.model_dump()) == {
        "owners",
        "users",
        "clusters",
        "paths",
        "folders",
        "upstreams",
        "strict",
    }
    assert all(
        target.mappings.model_dump()[f]
        for f in ("owners", "users", "clusters", "paths", "folders", "upstreams")
    )
