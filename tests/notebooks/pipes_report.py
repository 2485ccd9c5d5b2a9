# Databricks notebook source
# MAGIC %md
# MAGIC Test notebook reporting through Dagster Pipes from its own channel (the `dagster_pipes_channel`
# MAGIC widget): one metadata value, a data version, one asset check, a log line and printed lines.

# COMMAND ----------

from dagster_pipes import (
    PipesMappingParamsLoader,
    PipesUnityCatalogVolumesContextLoader,
    PipesUnityCatalogVolumesMessageWriter,
    encode_param,
    open_dagster_pipes,
)

dbutils.widgets.text("dagster_pipes_channel", "")
dbutils.widgets.text("label", "")
channel = dbutils.widgets.get("dagster_pipes_channel")
params = PipesMappingParamsLoader(
    {
        "DAGSTER_PIPES_CONTEXT": encode_param({"path": f"{channel}/context.json"}),
        "DAGSTER_PIPES_MESSAGES": encode_param({"path": f"{channel}/messages", "include_stdio_in_messages": True}),
    }
)
with open_dagster_pipes(
    params_loader=params,
    context_loader=PipesUnityCatalogVolumesContextLoader(),
    message_writer=PipesUnityCatalogVolumesMessageWriter(interval=1),
) as pipes:
    label = dbutils.widgets.get("label")
    print(f"first line printed by {label}", flush=True)
    pipes.log.info(f"{label} is reporting for {pipes.asset_key}")
    pipes.report_asset_materialization(metadata={"label": label, "label_length": len(label)}, data_version=label)
    pipes.report_asset_check("label_is_set", passed=bool(label), metadata={"label": label})
    print(f"last line printed by {label}", flush=True)
dbutils.notebook.exit("reported through pipes")
