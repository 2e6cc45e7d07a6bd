from obe.report import console_summary


rule analysis:
    """Across methods and seeds: RL as sampling, test pass@k, Tables 1-2, paired differences
    from GRPO with t-intervals over seeds, and the paper-vs-us claims."""
    input:
        evals=analysis_eval_inputs(),
        train=[f"{R}/train/{run}/done.json" for run in trained_runs()],
        base_train=f"{R}/graded/{BASE}/step0/train.jsonl",
    output:
        json=f"{R}/analysis/analysis.json",
        claims=report(
            f"{R}/analysis/claims.md",
            caption="../docs/captions/claims.rst",
            category="Paper vs us",
        ),
        sampling=report(
            f"{R}/analysis/fig_sampling.png",
            caption="../docs/captions/sampling.rst",
            category="RL as sampling",
        ),
    params:
        evals=lambda wildcards: analysis_eval_args(),
        train=lambda wildcards: " ".join(f"--train {run}={R}/train/{run}" for run in trained_runs()),
        out_dir=lambda wildcards, output: os.path.dirname(output.json),
        wandb_dir=f"{R}/wandb",
        experiment=config["experiment"],
    threads: job_resources("analysis")["threads"]
    resources:
        **rule_resources("analysis"),
    log:
        f"{R}/logs/analysis.log",
    benchmark:
        f"{R}/benchmarks/analysis.tsv"
    conda:
        "../envs/cpu.yaml"
    shell:
        "python -m obe.analysis {params.evals} {params.train} --base-train {input.base_train}"
        " --out-dir {params.out_dir} --experiment {params.experiment} --wandb-dir {params.wandb_dir}"
        " > {log} 2>&1"


rule report:
    """One self-contained report.html: figures, tables, reading guide, paper vs us, dropped data
    rows and outputs on disk that the configuration no longer plans (stale)."""
    input:
        analysis=f"{R}/analysis/analysis.json",
        bandits=f"{R}/bandits/summary.json",
        manifests=[f"{R}/data/{d}.manifest.json" for d in DATASETS],
    output:
        report(f"{R}/report.html", caption="../docs/captions/report.rst", category="Report"),
    params:
        analysis_dir=lambda wildcards, input: os.path.dirname(input.analysis),
        bandits_dir=lambda wildcards, input: os.path.dirname(input.bandits),
        manifests=lambda wildcards: " ".join(f"--manifest {d}={R}/data/{d}.manifest.json" for d in DATASETS),
        # every sample the configuration plans: evaluations and the base model's training-set samples
        planned=lambda wildcards: " ".join(f"{r}:{s}:{d}" for r, s, d in [*eval_triples(), (BASE, 0, "train")]),
        results_dir=lambda wildcards, output: os.path.dirname(output[0]),
        wandb_dir=f"{R}/wandb",
        experiment=config["experiment"],
    threads: job_resources("report")["threads"]
    resources:
        **rule_resources("report"),
    log:
        f"{R}/logs/report.log",
    benchmark:
        f"{R}/benchmarks/report.tsv"
    conda:
        "../envs/cpu.yaml"
    shell:
        "python -m obe.report --analysis-dir {params.analysis_dir} --bandits-dir {params.bandits_dir}"
        " {params.manifests} --results-dir {params.results_dir} --planned {params.planned}"
        " --experiment {params.experiment} --wandb-dir {params.wandb_dir} --out {output} > {log} 2>&1"


# On the console at the end of a run: rows each dataset dropped, outputs the configuration no
# longer plans, and after a failure why prepare_data refused a dataset under data.strict.
onsuccess:
    console_summary(R, DATASETS, [*eval_triples(), (BASE, 0, "train")])


onerror:
    console_summary(R, DATASETS, [*eval_triples(), (BASE, 0, "train")], failed=True)
