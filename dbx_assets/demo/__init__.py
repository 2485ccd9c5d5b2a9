"""The demo: landing data made by the project itself, and a headless run of the whole graph."""
