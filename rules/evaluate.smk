rule evaluate:
    """pass@k for every k, maj@k, distinct answers and lengths, per question and averaged."""
    input:
        f"{R}/graded/{{run}}/step{{step}}/{{dataset}}.jsonl",
    output:
        questions=f"{R}/eval/{{run}}/step{{step}}/{{dataset}}/per_question.jsonl",
        summary=f"{R}/eval/{{run}}/step{{step}}/{{dataset}}/summary.json",
    threads: job_resources("evaluate")["threads"]
    resources:
        **rule_resources("evaluate"),
    log:
        f"{R}/logs/evaluate/{{run}}/step{{step}}/{{dataset}}.log",
    benchmark:
        f"{R}/benchmarks/evaluate/{{run}}/step{{step}}/{{dataset}}.tsv"
    conda:
        "../envs/cpu.yaml"
    shell:
        "python -m obe.evaluate --graded {input} --out-questions {output.questions}"
        " --out-summary {output.summary} > {log} 2>&1"


rule log_evals:
    """A trained model's evaluations as a W&B run beside its training run (same group and config),
    on the training-step axis (base = step 0): one small job after all of them."""
    input:
        done=f"{R}/train/{{method}}__s{{seed}}/done.json",
        summaries=run_eval_summaries,
    output:
        f"{R}/logged_evals/{{method}}__s{{seed}}.json",
    params:
        train_dir=lambda wildcards, input: os.path.dirname(input.done),
        evals=run_eval_args,
        wandb_dir=f"{R}/wandb",
        experiment=config["experiment"],
    threads: job_resources("log_evals")["threads"]
    resources:
        **rule_resources("log_evals"),
    log:
        f"{R}/logs/log_evals/{{method}}__s{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/log_evals/{{method}}__s{{seed}}.tsv"
    conda:
        "../envs/cpu.yaml"
    shell:
        "python -m obe.log_evals --train-dir {params.train_dir} {params.evals} --out {output}"
        " --experiment {params.experiment} --wandb-dir {params.wandb_dir} > {log} 2>&1"
