"""msgcapi as an Airflow DAG: the CronJob of kubernetes-cronjob.yaml, with Airflow's scheduling.

Every night at 03:15 UTC, one mapped task per shard (dynamic task mapping, ``.expand``): map
index K runs ``msgcapi send --shard K/4`` on the previous day's exports, read from the bucket;
all shards share one ledger in PostgreSQL; each writes its own report and summary back to the
bucket (s3://reports/acme/DAY/shard-K.csv and .json).

Operator: KubernetesPodOperator (apache-airflow-providers-cncf-kubernetes). Each shard runs in
its own pod from the image built by the repository's Dockerfile, with the same Secrets and
ConfigMap as the CronJob (see its header), so Airflow's workers need neither msgcapi installed
(BashOperator) nor access to a Docker daemon (DockerOperator), and a shard's memory and CPU are
the pod's, not the worker's. The command line is passed as the pod's arguments, without a shell:
the input glob reaches msgcapi as written, and msgcapi expands it in the bucket.

Written for Airflow 3 (on Airflow 2.x import DAG from ``airflow`` instead of ``airflow.sdk``).

Rerunning one failed shard: clear that one mapped task instance (map index K) of that night's
run. It renders the same date, so it runs the same shard on the same inputs with the same
ledger: rows already delivered come back ``already_sent``, the rest are sent, and its report
replaces the failed attempt's.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from kubernetes.client import models as k8s

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.cncf.kubernetes.secret import Secret
from airflow.sdk import DAG
from airflow.timetables.trigger import CronTriggerTimetable

# The number of shards. Changing it between two nights is safe: the ledger is shared, and
# every row falls in exactly one shard of any N.
SHARDS = 4

IMAGE = "registry.example.com/msgcapi:0.1.0"

# The night whose exports a run sends: the day before the run's logical date. With
# CronTriggerTimetable the logical date is the time the run was due (03:15 UTC), on Airflow 2
# and 3 alike. Trigger a manual run with a logical date.
NIGHT = "{{ macros.ds_add(ds, -1) }}"

# The ledger. Its password comes from PGPASSWORD (a Secret below), never from this URL.
LEDGER = "postgres://msgcapi@postgres.msgcapi.svc.cluster.local:5432/msgcapi"


def msgcapi_args(shard: int) -> list[str]:
    """The command line of one shard, after the image's entrypoint (msgcapi)."""
    reports = f"s3://reports/acme/{NIGHT}"
    return [
        "send",
        "--mapping", "/etc/msgcapi/acme.yaml",
        "--shard", f"{shard}/{SHARDS}",
        "--state", LEDGER,
        "--report", f"{reports}/shard-{shard}.csv",
        "--summary-json", f"{reports}/shard-{shard}.json",
        "--progress", "log",
        f"s3://exports/acme/{NIGHT}/*.csv.gz",
    ]


with DAG(
    dag_id="msgcapi_acme",
    schedule=CronTriggerTimetable("15 3 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    # Like the CronJob's concurrencyPolicy: Forbid: one night at a time.
    max_active_runs=1,
    tags=["msgcapi"],
) as dag:
    KubernetesPodOperator.partial(
        task_id="send",
        name="msgcapi-acme",
        namespace="msgcapi",
        image=IMAGE,
        # The token and the ledger's password: from Secrets, as environment variables, never
        # in the arguments. `msgcapi-aws` holds AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY;
        # drop it if the service account has workload identity (EKS: IRSA).
        secrets=[
            Secret("env", "MSGCAPI_ACCESS_TOKEN", "msgcapi-token", "token"),
            Secret("env", "PGPASSWORD", "msgcapi-postgres", "password"),
            Secret("env", None, "msgcapi-aws"),
        ],
        env_vars={"AWS_REGION": "eu-west-1"},
        service_account_name="msgcapi",
        volumes=[
            k8s.V1Volume(
                name="mappings",
                config_map=k8s.V1ConfigMapVolumeSource(name="msgcapi-mappings"),
            ),
            # Reports and summaries are staged here before upload.
            k8s.V1Volume(name="tmp", empty_dir=k8s.V1EmptyDirVolumeSource()),
        ],
        volume_mounts=[
            k8s.V1VolumeMount(name="mappings", mount_path="/etc/msgcapi", read_only=True),
            k8s.V1VolumeMount(name="tmp", mount_path="/tmp"),
        ],
        container_resources=k8s.V1ResourceRequirements(
            requests={"cpu": "500m", "memory": "256Mi"},
            limits={"memory": "1Gi"},
        ),
        security_context=k8s.V1PodSecurityContext(
            run_as_non_root=True,
            run_as_user=10001,
            run_as_group=10001,
            seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
        ),
        container_security_context=k8s.V1SecurityContext(
            allow_privilege_escalation=False,
            read_only_root_filesystem=True,
            capabilities=k8s.V1Capabilities(drop=["ALL"]),
        ),
        # SIGTERM (a timeout, a cleared task): msgcapi starts no new request, lets in-flight
        # ones finish (--grace, 10 s), reports the remaining rows not_attempted and uploads the
        # report, exit 130. Give it time.
        termination_grace_period=120,
        execution_timeout=timedelta(hours=4),
        # msgcapi's exit codes (README.md, "Exit codes"):
        #   0    every row sent, already sent, valid or duplicate: success.
        #   1    completed, some rows need a look (the shard's report says which): "skipped",
        #        so it is not retried (a retry cannot fix invalid rows) and not a failure that
        #        pages; read the report in the morning. Give downstream tasks
        #        trigger_rule="none_failed" if they should run after it.
        #   2    usage or mapping error, nothing sent: failed (its retries fail the same way).
        #   3    aborted (token, permission, outage, unreadable input or ledger): failed,
        #        retried; the ledger makes a retry send only what was not delivered.
        #   130  interrupted (SIGTERM): failed, retried the same way.
        #   141  only when the report goes to stdout, not with --report as here.
        skip_on_exit_code=1,
        retries=2,
        retry_delay=timedelta(minutes=10),
        # All shards at once; lower it to bound the load on the ledger and the bucket.
        max_active_tis_per_dagrun=SHARDS,
    ).expand(arguments=[msgcapi_args(shard) for shard in range(SHARDS)])
