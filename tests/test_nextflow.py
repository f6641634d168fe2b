"""The Nextflow pipeline (main.nf, modules/, nextflow.config, conf/) without Nextflow.

* lint: Nextflow's language server (tests/nflsp.py) parses every file with the strict
  syntax and must report no error;
* graph: the language server's DAG of main.nf has the stages and edges of
  ``teravox.graph``;
* commands: each module's ``script:`` runs one bin/ command whose parser (the stage
  module's ``build_parser()``) accepts the flags it is given;
* parameters: nextflow.config, nextflow_schema.json and ``teravox.config.params`` agree;
* tests/test_nextflow_run.py runs the pipeline itself.

The language-server tests are skipped, saying why, when Java 17 or the server's jar is
missing: ``bash .ci/install-nextflow-lsp.sh`` installs both.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import json
import os
import re
import shlex
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import nflsp  # noqa: E402

from teravox import __version__, graph  # noqa: E402
from teravox.config.params import FIELDS, Params  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MAIN = ROOT / "main.nf"
CONFIG = ROOT / "nextflow.config"
SCHEMA = ROOT / "nextflow_schema.json"
MODULES = ROOT / "modules"
CONF = ROOT / "conf"

#: Processes of main.nf that are not stages of the reconstruction: name -> the stages it
#: may feed (SYNTH makes the test profile's scan, read by the stages that read raw data).
HELPERS = {"SYNTH": {"PLAN", "STITCH_ALIGN", "PREPROCESS", "REPORT"}}
LABELS = {"process_plan", "process_preprocess", "process_collect", "process_reconstruct",
          "process_gpu", "process_merge", "process_report", "process_cleanup"}
PROFILES = {"standard", "local", "test", "slurm", "maxiv", "gpu", "apptainer"}


def module_file(stage: graph.Stage) -> Path:
    return MODULES / f"{stage.name.replace('-', '_')}.nf"


def pipeline_files() -> list[Path]:
    return [MAIN, CONFIG, *sorted(MODULES.glob("*.nf")), *sorted(CONF.glob("*.config"))]


# ------------------------------------------------------------------------------------------
# the language server, once per module


@pytest.fixture(scope="module")
def lsp():
    why = nflsp.missing_requirements()
    if why:
        pytest.skip(why)
    with nflsp.LanguageServer(nflsp.find_jar(), ROOT) as server:
        yield server


@pytest.fixture(scope="module")
def lint(lsp):
    return lsp.lint(pipeline_files())


@pytest.mark.nextflow
def test_lint_catches_errors(lsp):
    """The linter is awake: a broken script and a broken config are reported."""
    script = lsp.lint_text(ROOT / "_teravox_lint_probe.nf",
                           "workflow {\n    chanel.of(1).view()\n}\n")
    assert any(d.severity == "error" and "chanel" in d.message for d in script), script
    config = lsp.lint_text(ROOT / "_teravox_lint_probe.config", "process {\n    cpus = (\n}\n")
    assert any(d.severity == "error" for d in config), config


@pytest.mark.nextflow
def test_lint_pipeline_has_no_errors(lsp, lint):
    """main.nf, modules/, nextflow.config and conf/ pass the strict-syntax linter."""
    files = pipeline_files()
    assert len(files) >= 2 + 8 + 7, [str(f) for f in files]
    unchecked = set(files) - lsp.checked_files()
    assert not unchecked, f"not linted: {sorted(map(str, unchecked))}"
    errors = [d for d in lint if d.severity == "error"]
    assert not errors, "Nextflow lint errors:\n" + "\n".join(map(str, errors))


@pytest.mark.nextflow
def test_lint_pipeline_has_no_warnings(lint):
    """No warnings either (deprecated syntax, unused variables) in the pipeline files."""
    warnings = [d for d in lint if d.severity == "warning"]
    assert not warnings, "Nextflow lint warnings:\n" + "\n".join(map(str, warnings))


@pytest.fixture(scope="module")
def dag(lsp, lint):
    errors = [d for d in lint if d.severity == "error" and d.path == MAIN]
    if errors:
        pytest.fail("main.nf does not parse:\n" + "\n".join(map(str, errors)))
    return nflsp.parse_mermaid(lsp.preview_dag(MAIN))


@pytest.mark.nextflow
def test_dag_has_the_stages_of_graph(dag):
    stages = {s.process for s in graph.STAGES}
    processes = set(dag.processes().values())
    assert processes - set(HELPERS) == stages


@pytest.mark.nextflow
def test_dag_edges_match_graph(dag):
    """Process → process edges of main.nf == teravox.graph.edges() (with Nextflow names)."""
    name = {s.name: s.process for s in graph.STAGES}
    expected = {(name[a], name[b]) for a, b in graph.edges()}
    edges = dag.process_edges()
    stage_edges = {(a, b) for a, b in edges if a not in HELPERS and b not in HELPERS}
    assert stage_edges == expected, (
        f"missing from main.nf: {sorted(expected - stage_edges)}; "
        f"not in graph.py: {sorted(stage_edges - expected)}")
    for helper, allowed in HELPERS.items():
        feeds = {b for a, b in edges if a == helper}
        assert "PLAN" in feeds and feeds <= allowed, (helper, feeds)
        assert not {a for a, b in edges if b == helper}, f"{helper} must be a source"


def test_graph_edges_need_no_language_server():
    """The expected edge set, written out: a change to graph.py shows up here too."""
    assert graph.edges() == {
        ("plan", "stitch-align"), ("plan", "preprocess"), ("stitch-align", "preprocess"),
        ("plan", "collect"), ("preprocess", "collect"), ("plan", "reconstruct"),
        ("collect", "reconstruct"), ("plan", "merge"), ("reconstruct", "merge"),
        ("plan", "report"), ("stitch-align", "report"), ("collect", "report"), ("merge", "report"),
        ("plan", "cleanup"), ("merge", "cleanup"), ("report", "cleanup"),
        ("plan", "z-stitch"), ("merge", "z-stitch"), ("plan", "center-sweep"), ("collect", "center-sweep"),
    }


# ------------------------------------------------------------------------------------------
# the modules, read as text


@dataclasses.dataclass
class Module:
    path: Path
    process: str
    directives: list[tuple[str, str]]   # (name, value) before the first section, in order
    sections: dict[str, str]            # input / output / script / stub -> body text

    @property
    def labels(self) -> list[str]:
        return [v.strip("'\"") for k, v in self.directives if k == "label"]

    def script_string(self, section: str = "script") -> str:
        """The triple-quoted string of the script (or stub) section."""
        body = self.sections.get(section, "")
        m = re.search(r'"""(.*?)"""', body, re.S)
        assert m, f"{self.path.name}: no \"\"\" string in its {section}: section"
        return m.group(1)


def read_module(path: Path) -> Module:
    text = path.read_text()
    m = re.search(r"^process\s+([A-Z][A-Z0-9_]*)\s*\{(.*)^\}", text, re.S | re.M)
    assert m, f"{path.name}: no process"
    name, body = m.group(1), m.group(2)
    parts = re.split(r"^\s*(input|output|when|script|shell|exec|stub):\s*$", body, flags=re.M)
    head, sections = parts[0], dict(zip(parts[1::2], parts[2::2], strict=True))
    directives = []
    for line in head.splitlines():
        line = line.strip()
        if line and not line.startswith(("//", "/*", "*")):
            word, _, rest = line.partition(" ")
            directives.append((word, rest.strip()))
    return Module(path=path, process=name, directives=directives, sections=sections)


@pytest.mark.parametrize("stage", graph.STAGES, ids=lambda s: s.name)
def test_module_of_each_stage(stage):
    """modules/<stage>.nf: the process of graph.py, with tag, label, container at the top,
    a script and a stub, and versions.yml among its outputs."""
    path = module_file(stage)
    assert path.is_file(), f"missing {path.relative_to(ROOT)}"
    mod = read_module(path)
    assert mod.process == stage.process
    names = [k for i, (k, _) in enumerate(mod.directives)
             if i == 0 or k != mod.directives[i - 1][0]]
    assert names[:3] == ["tag", "label", "container"], names
    assert mod.labels[0] == stage.label, mod.labels
    extra = set(mod.labels[1:])
    assert extra <= ({"process_gpu"} if stage.name == "reconstruct" else set()), extra
    for section in ("input", "output", "script", "stub"):
        assert section in mod.sections, f"{path.name}: no {section}: section"
    assert re.search(r"path\s+'versions\.yml',\s*emit:\s*versions", mod.sections["output"])
    for section in ("script", "stub"):
        assert "versions.yml" in mod.script_string(section)
        assert "teravox --version" in mod.script_string(section)
    # the stub runs no stage
    assert not re.search(r"^\s*teravox-", mod.script_string("stub"), re.M)


def test_labels_have_resources():
    base = (CONF / "base.config").read_text()
    used = {label for p in MODULES.glob("*.nf") for label in read_module(p).labels}
    assert used <= LABELS, used - LABELS
    assert {s.label for s in graph.STAGES} <= used
    for label in LABELS:
        assert re.search(rf"withLabel:\s*'{label}'", base), f"conf/base.config: no {label}"
    assert re.search(r"task\.exitStatus in \[137, 140\]", base)
    assert "resourceLimits" in base
    assert "task.attempt" in base


def test_main_includes_every_module_and_collects_versions():
    main = MAIN.read_text()
    for path in MODULES.glob("*.nf"):
        process = read_module(path).process
        assert re.search(rf"include\s*\{{\s*{process}\s*\}}\s*from\s*'\./modules/{path.stem}'",
                         main), f"main.nf does not include {process} from {path.name}"
        assert f"{process}.out.versions" in main, f"main.nf drops {process}'s versions"


def test_profiles():
    config = CONFIG.read_text()
    block = config[config.index("profiles {"):]
    found = set(re.findall(r"^    (\w+)\s*\{", block, re.M))
    assert PROFILES <= found, PROFILES - found
    for name in re.findall(r"includeConfig\s+'([^']+)'", config):
        assert (ROOT / name).is_file(), name
    gpu = (CONF / "gpu.config").read_text()
    assert "--gres=gpu:1" in gpu and "'--nv'" in gpu and "fourier-gpu" in gpu
    assert "container_cuda" in gpu
    apptainer = (CONF / "apptainer.config").read_text()
    assert re.search(r"enabled\s*=\s*true", apptainer)
    assert re.search(r"autoMounts\s*=\s*true", apptainer)
    assert "cacheDir" in apptainer
    maxiv = (CONF / "maxiv.config").read_text()
    assert "'slurm'" in maxiv and "queue" in maxiv and "resourceLimits" in maxiv
    assert re.search(r"synth\s*=\s*true", (CONF / "test.config").read_text())


# ------------------------------------------------------------------------------------------
# each script's command, through the stage's own argument parser

#: Nextflow variables of the modules' command lines -> sample values (full, minimal)
SAMPLES: dict[str, tuple[str, str]] = {
    "plan": ("plan.json", "plan.json"),
    "chunk": ("3", "0"),
    "scan_arg": ("scan/scan.h5", "scan/scan.h5"),
    "sheet_arg": ("--scan-sheet sheet/sheet.csv", ""),
    "params_arg": ("--params params/parameters.yaml", ""),
    "tori_arg": ("--tori tori/settings.tori", ""),
    "task.cpus": ("4", "1"),
    "shifts_arg": ("--shifts shifts.json", ""),
    "projections": ("projections.h5", "projections.h5"),
    "volume": ("scan_recon.h5", "scan_recon.h5"),
    "report": ("scan_report.pdf", "scan_report.pdf"),
    "meta.id": ("scan", "scan"),
    "args": ("", ""),
    "plan_args": ("@ALL_PARAMS", "--memory '4G'"),
}


def sample_value(name: str) -> Any:
    """A value for a teravox parameter: its default, or a plausible one where that is None."""
    f = FIELDS[name]
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    if default is not None:
        return default
    hint = typing.get_type_hints(Params)[name]
    options = [a for a in get_args(hint) if a is not type(None)]
    kind = options[0]
    if name.endswith("_file"):
        return f"{name.removesuffix('_file')}s.h5"
    if name == "dtype_range":
        return [0.0, 1.0]
    if name == "gpu_memory":
        return "40G"
    if get_origin(kind) is list:
        return [0, -1, 1] if get_args(kind)[0] is int else [0.0, 1.0]
    if get_origin(kind) is Literal:
        return get_args(kind)[0]
    return {int: 2, float: 1024.5, str: "x"}[kind]


def cli_value(value: Any) -> str:
    """What main.nf's cliValue() makes of a value."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def all_param_flags() -> str:
    """Every teravox parameter as `teravox plan` gets it from main.nf's planArgs()."""
    return " ".join(f"--{n.replace('_', '-')} {shlex.quote(cli_value(sample_value(n)))}"
                    for n in FIELDS)


def command_line(mod: Module, variant: int) -> list[str]:
    """The module's one bin/ command (or `teravox <sub>` for helpers) with samples for
    the Nextflow variables, as argv."""
    script = mod.script_string("script").replace("\\\n", " ")
    # the command, without the environment it is given (TERAVOX_THREADS=${task.cpus})
    lines = [re.sub(r"^(\w+=\S+\s+)+", "", ln.strip()) for ln in script.splitlines()]
    commands = [ln for ln in lines if re.match(r"teravox(-[a-z-]+|\s+[a-z-]+)(\s|$)", ln)]
    assert len(commands) == 1, f"{mod.path.name}: expected one teravox command, got {commands}"
    bin_commands = [ln for ln in lines if ln.startswith("teravox-")]
    assert len(bin_commands) <= 1, bin_commands

    def substitute(m: re.Match) -> str:
        key = m.group(1).strip()
        assert key in SAMPLES, f"{mod.path.name}: no sample for ${{{key}}}: add it to SAMPLES"
        value = SAMPLES[key][variant]
        return all_param_flags() if value == "@ALL_PARAMS" else value

    return shlex.split(re.sub(r"\$\{([^}]*)\}", substitute, commands[0]))


def stage_parser(command: str) -> tuple[str, Any]:
    """teravox-<stage> or `teravox <sub>` → (module name, its build_parser)."""
    from teravox.cli import COMMANDS

    sub = command.removeprefix("teravox-")
    assert sub in COMMANDS, f"{command}: no such teravox command"
    module_name = COMMANDS[sub][0]
    try:
        module = importlib.import_module(f"teravox.stages.{module_name}")
    except ModuleNotFoundError as exc:
        pytest.fail(f"teravox.stages.{module_name} is not there yet ({exc}): "
                    f"{command} cannot be checked")
    assert hasattr(module, "build_parser"), f"teravox.stages.{module_name}.build_parser"
    return module_name, module.build_parser


def parse(build_parser: Any, argv: list[str]) -> Any:
    parser = build_parser()
    try:
        return parser.parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"{parser.prog} rejects {shlex.join(argv)} (exit {exc.code})")


@pytest.mark.parametrize("variant", [0, 1], ids=["all-options", "required-only"])
@pytest.mark.parametrize("path", sorted(MODULES.glob("*.nf")), ids=lambda p: p.stem)
def test_module_command_parses(path, variant):
    mod = read_module(path)
    argv = command_line(mod, variant)
    command = argv[0]
    if command == "teravox":  # a helper (SYNTH): `teravox <subcommand>`
        assert mod.process in HELPERS, f"{path.name}: stages call their bin/ command"
        command, argv = argv[1], argv[1:]
    else:
        exe = ROOT / "bin" / command
        assert exe.is_file(), f"bin/{command} does not exist"
        assert os.access(exe, os.X_OK), f"bin/{command} is not executable"
        stage = next(s for s in graph.STAGES if s.process == mod.process)
        assert command == stage.command
    _, build_parser = stage_parser(command)
    args = parse(build_parser, argv[1:])
    if path.stem == "plan" and variant == 0:
        # every parameter reaches `teravox plan` as a flag it turns into Params
        from teravox.config import params as tparams

        tparams.from_args(args)
        missing = [n for n in FIELDS if getattr(args, f"param_{n}", None) is None]
        assert not missing, f"teravox plan has no flag for {missing}"


def test_plan_args_cover_every_parameter():
    flags = shlex.split(all_param_flags())
    names = [f[2:].replace("-", "_") for f in flags if f.startswith("--")]
    assert names == list(FIELDS)


# ------------------------------------------------------------------------------------------
# parameters: nextflow.config <-> nextflow_schema.json <-> teravox.config.params


def groovy_value(text: str) -> Any:
    """A Groovy literal of the generated params block as a Python value."""
    text = text.strip()
    if text.startswith('"'):
        return text[1:-1]  # a GString, compared as written
    text = re.sub(r"\bnull\b", "None", text)
    text = re.sub(r"\btrue\b", "True", text)
    text = re.sub(r"\bfalse\b", "False", text)
    return ast.literal_eval(text)


def config_params(text: str) -> dict[str, str]:
    """name -> value text of the top-level ``params { }`` block(s) of a config file."""
    out: dict[str, str] = {}
    for m in re.finditer(r"^params\s*\{\s*$(.*?)^\}", text, re.S | re.M):
        for line in m.group(1).splitlines():
            line = line.split("//", 1)[0].strip() if not line.strip().startswith("//") else ""
            if "=" in line:
                name, _, value = line.partition("=")
                out[name.strip()] = value.strip()
    for m in re.finditer(r"^\s*params\.(\w+)\s*=\s*(.+)$", text, re.M):
        out[m.group(1)] = m.group(2).strip()
    return out


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA.read_text())


def schema_properties(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    props: dict[str, dict[str, Any]] = {}
    for group in schema["$defs"].values():
        for name, prop in group["properties"].items():
            assert name not in props, f"{name} is in two groups"
            props[name] = prop
    return props


def test_generated_files_are_up_to_date():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_nextflow_schema.py"),
                             "--check"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr


def test_config_params_are_in_the_schema_and_back(schema):
    config = config_params(CONFIG.read_text())
    props = schema_properties(schema)
    assert set(config) == set(props), (
        f"in nextflow.config only: {sorted(set(config) - set(props))}; "
        f"in nextflow_schema.json only: {sorted(set(props) - set(config))}")
    for name, text in config.items():
        value = groovy_value(text)
        assert props[name].get("default") == value, (name, props[name].get("default"), value)


def test_profiles_set_only_known_params(schema):
    props = schema_properties(schema)
    for path in sorted(CONF.glob("*.config")):
        unknown = set(config_params(path.read_text())) - set(props)
        assert not unknown, f"{path.name} sets unknown params {sorted(unknown)}"


def test_every_teravox_parameter_is_a_pipeline_parameter(schema):
    props = schema_properties(schema)
    teravox = {n for n, p in props.items() if p.get("x-teravox")}
    assert teravox == set(FIELDS)
    config = config_params(CONFIG.read_text())
    for name, f in FIELDS.items():
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        assert groovy_value(config[name]) == default, name
        assert props[name].get("default") == default, name
        assert props[name]["description"] == f.metadata["help"], name


def test_schema_is_valid_json_schema(schema):
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert {ref["$ref"].split("/")[-1] for ref in schema["allOf"]} == set(schema["$defs"])
    # the defaults are valid values
    defaults = {n: p["default"] for n, p in schema_properties(schema).items() if "default" in p}
    jsonschema.Draft202012Validator(schema).validate(defaults)


def test_version_is_the_package_version():
    config = CONFIG.read_text()
    assert re.search(rf"version\s*=\s*'{re.escape(__version__)}'", config), \
        "manifest.version must be teravox's version"
    for name in ("cpu", "cuda"):
        assert f"teravox-{name}-{__version__}.sif" in config
        definition = (ROOT / "containers" / f"{name}.def").read_text()
        assert re.search(rf"^\s*TERAVOX_VERSION={re.escape(__version__)}\s*$", definition, re.M), \
            f"containers/{name}.def: TERAVOX_VERSION default is not {__version__}"
        assert "org.opencontainers.image.version {{ TERAVOX_VERSION }}" in definition
        assert "APPTAINER_LABELS" in definition
