"""Strategies and their incremental indicators."""

from deskd.configs.models import S1_ID, S2_ID, S3_ID
from deskd.strategies.breakout import BreakoutAtrCompression
from deskd.strategies.mean_reversion import MeanReversionZScore
from deskd.strategies.trend import TrendEmaAtrAdx

STRATEGY_CLASSES = {S1_ID: TrendEmaAtrAdx, S2_ID: MeanReversionZScore, S3_ID: BreakoutAtrCompression}

__all__ = ["STRATEGY_CLASSES"]
