"""Tree search over Diffusion Forcing plans: Monte Carlo Tree Diffusion with batched parallel expansion
(`search=mctd`, `dfplan.settings.SamplerSettings`). Reads its settings from `dfplan.settings` and its meta-actions and
value functions from the task (`dfplan.tasks.base.Task.meta_actions`, `plan_value`)."""

from dfplan.search.mctd import SearchResult, mctd_search
from dfplan.search.tree import Node, Tree

__all__ = ["Node", "SearchResult", "Tree", "mctd_search"]
