# obe: outcome-based exploration for RL post-training of LLMs, as one DAG.
#   snakemake --cores all                                  # the embedded default (CPU)
#   snakemake --cores all --configfile configs/smoke.yaml  # the few-minute test DAG
#   snakemake --cores all --profile slurm                  # on a Slurm cluster
from pathlib import Path
import sys

from snakemake.utils import min_version

min_version("9.0")

configfile: "config.yaml"

sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))
from obe.core.config import validate_config
from obe.core.progress import quiet_library_bars
from obe.sources import check_sources
from obe.results import record_invocation

validate_config(config)
quiet_library_bars()  # jobs log to files: no library progress bars in them (obe.core.progress)
# a missing data file or an unfetched hub dataset/model fails here, not in a job
check_sources(config, Path(workflow.basedir), workflow.overwrite_configfiles)


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/base_model.smk"
include: "rules/sampling.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/bandits.smk"
include: "rules/analysis.smk"


# When, where and at which commit this invocation ran, for the results summary (python -m obe.results).
onstart:
    record_invocation(R, workflow.basedir)


rule all:
    input:
        all_outputs(),
    default_target: True
