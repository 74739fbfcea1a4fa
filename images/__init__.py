"""The files that turn any base image into a devbox (shipped as package data)."""
