# Databricks notebook source
# COMMAND ----------

print("sink ran")
