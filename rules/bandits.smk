rule bandits:
    """The paper's theory, simulated: outcome- vs arm-level UCB regret on outcome-based bandits."""
    output:
        tsv=report(
            f"{R}/bandits/regret.tsv",
            caption="../docs/captions/bandits.rst",
            category="Theory",
        ),
        md=f"{R}/bandits/regret.md",
        png=report(
            f"{R}/bandits/regret.png",
            caption="../docs/captions/bandits.rst",
            category="Theory",
        ),
        summary=f"{R}/bandits/summary.json",
    params:
        out_dir=lambda wildcards, output: os.path.dirname(output.summary),
    threads: job_resources("bandits")["threads"]
    resources:
        **rule_resources("bandits"),
    log:
        f"{R}/logs/bandits.log",
    benchmark:
        f"{R}/benchmarks/bandits.tsv"
    conda:
        "../envs/cpu.yaml"
    shell:
        "python -m obe.bandits --out-dir {params.out_dir} > {log} 2>&1"
