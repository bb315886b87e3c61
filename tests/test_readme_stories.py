"""The README is a test: every user story's commands run as written, in order (issue 13).

The runner (``hwsurrogate.benchmarks.stories``) is checked on a small README the test writes;
then the project's own README stories run on the public data (skipped when it is absent), with
training defaults made small through ``HWSURROGATE_CLI_DEFAULTS`` (click's ``default_map``) so
the whole set fits in CI. ``hws bench stories`` runs the same stories with the shipped defaults.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hwsurrogate.benchmarks.stories import link_repo_files, readme_stories, run_story, story_env

REPO = Path(__file__).resolve().parents[1]

TINY = """# x

## Set-up

```bash
echo not-a-story
```

## What it does, by user

### First user

```bash
echo one > a.txt      # a comment
# a comment line
cat a.txt \\
    b.txt 2>/dev/null || echo continued
```

### Second user

```bash
echo two
false
echo never
```

### Third user

```bash
hws collect gemm --device cuda   # needs a CUDA build of torch
```

## Next section

```bash
echo not-a-story-either
```
"""


def test_stories_are_the_bash_blocks_under_each_user_heading(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(TINY)
    stories = readme_stories(readme)
    assert [s.title for s in stories] == ["First user", "Second user", "Third user"]
    assert [c.text for c in stories[0].commands] == [
        "echo one > a.txt      # a comment",
        "cat a.txt b.txt 2>/dev/null || echo continued",
    ]
    assert stories[0].commands[1].line == 16


def test_a_story_stops_at_its_first_failing_command(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(TINY)
    first, second, _ = readme_stories(readme)
    env = story_env(tmp_path, None)
    ran = run_story(first, tmp_path, env)
    assert [r.outcome for r in ran] == ["ok", "ok"] and "one" in ran[1].tail
    ran = run_story(second, tmp_path, env)
    assert [r.outcome for r in ran] == ["ok", "failed"]  # `echo never` is not run


def test_a_cuda_command_must_refuse_clearly_on_a_cpu_only_machine(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(TINY)
    third = readme_stories(readme)[2]
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the command is expected to run, not to refuse")
    (res,) = run_story(third, tmp_path, story_env(tmp_path, None))
    assert res.outcome == "refused-as-documented", res.tail


#: Small training defaults for CI (the stories themselves stay as written).
CI_DEFAULTS = """
train:
  gemm: {max_train_rows: 20000, max_iter: 60}
  latency: {max_train_archs: 200, space: nb201}
  fewshot: {spaces: nb201, gnn_spaces: none}
  fpga-hls4ml: {max_iter: 40}
  fpga-hlsyn: {max_iter: 30}
  ops: {max_iter: 60}
collect:
  ops: {scale: 0.2, min_time_s: 0.02}
  latency: {repeats: 10, warmup: 2}
  gemm: {min_time_s: 0.1}
"""


@pytest.mark.skipif(
    not os.environ.get("HWSURROGATE_DATA_DIR") or not Path(os.environ["HWSURROGATE_DATA_DIR"]).is_dir(),
    reason="public data not available: set HWSURROGATE_DATA_DIR to ../shared/data",
)
@pytest.mark.timeout(900)
def test_every_readme_story_runs_as_written(tmp_path: Path) -> None:
    defaults = tmp_path / "ci-defaults.yml"
    defaults.write_text(CI_DEFAULTS)
    work = tmp_path / "work"
    work.mkdir()
    link_repo_files(REPO, work)
    env = story_env(
        work, Path(os.environ["HWSURROGATE_DATA_DIR"]), {"HWSURROGATE_CLI_DEFAULTS": str(defaults)}
    )
    failures = []
    stories = readme_stories(REPO / "README.md")
    assert len(stories) >= 4
    for story in stories:
        for res in run_story(story, work, env, timeout=600):
            if res.outcome == "failed":
                failures.append(f"{story.title} (README line {res.line}): {res.command}\n{res.tail}")
    assert not failures, "\n\n".join(failures)
