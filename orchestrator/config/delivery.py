"""A task's `deliver:` section: what its champion translates at the end of each job (the checks
that need no network; orchestrator.sweep.delivery checks the locations themselves before anything
trains)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from orchestrator.config.problems import short


class Deliver(BaseModel):
    """A delivery set: the task's champion translates it at the end of each job
    (orchestrator.sweep.delivery), as `python -m orchestrator translate` would."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    input: str = Field(min_length=1, description="a folder or s3://bucket/prefix/ of images")
    output: str = Field(
        min_length=1, description="a folder or s3://bucket/prefix/ outside the input"
    )
    direction: Literal["AtoB", "BtoA"] = Field("AtoB", description="which generator translates")
    format: Literal["png", "jpg", "webp"] = Field("png", description="the translations' format")
    workers: int | str = Field(
        1, description="translating actors: a number, or MIN-MAX for Ray Data to autoscale within"
    )
    gpus_per_worker: float = Field(0.0, ge=0, description="GPUs each translating actor reserves")
    batch_size: int = Field(16, ge=1, le=4096, description="images per block through the stages")

    @field_validator("input", "output")
    @classmethod
    def _location(cls, value: str) -> str:
        scheme, sep, _ = value.partition("://")
        if sep and scheme.lower() != "s3":
            raise ValueError(
                f"{short(value)}: unsupported scheme {scheme}://; use a folder or s3://bucket/prefix"
            )
        return value

    @field_validator("workers")
    @classmethod
    def _pool(cls, value: int | str) -> str:
        low, dash, high = str(value).partition("-")
        if not (low.isdigit() and (high.isdigit() or not dash)) or not (
            1 <= int(low) <= int(high if dash else low)
        ):
            raise ValueError(f"{short(value)}: give a number (4) or a range MIN-MAX (1-8), from 1")
        return str(value)

    @model_validator(mode="after")
    def _apart(self) -> Deliver:
        def norm(location: str) -> str:
            return location.rstrip("/") + "/"

        if norm(self.output).startswith(norm(self.input)):
            raise ValueError(
                "output lies inside input: a later delivery would read the translations as "
                "inputs; give an output outside the input"
            )
        return self
