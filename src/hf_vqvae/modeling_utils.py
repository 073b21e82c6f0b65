"""What every hf-vqvae model shares: loading that refuses a checkpoint it does not match."""

from transformers import PreTrainedModel


class CheckpointMismatchError(ValueError):
    """A checkpoint's tensors do not fit the model its config describes."""


class StrictPreTrainedModel(PreTrainedModel):
    """`PreTrainedModel` whose `from_pretrained` fails on missing, unexpected or mis-shaped weights.

    transformers only logs missing weights and re-initialises them at random, which would hand
    a user a silently broken codebook or prior. Pass `ignore_mismatched_sizes=True` to get
    transformers' permissive behaviour back.
    """

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        if kwargs.get("ignore_mismatched_sizes"):
            return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        return_loading_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(
            pretrained_model_name_or_path, *args, ignore_mismatched_sizes=True, output_loading_info=True, **kwargs
        )
        problems = [
            f"  {name}: checkpoint has shape {tuple(stored)}, the config gives {tuple(expected)}"
            for name, stored, expected in info["mismatched_keys"]
        ]
        problems += [f"  {name}: missing from the checkpoint" for name in sorted(info["missing_keys"])]
        problems += [f"  {name}: in the checkpoint but not in the model" for name in sorted(info["unexpected_keys"])]
        if problems:
            raise CheckpointMismatchError(
                f"the checkpoint at {pretrained_model_name_or_path!r} does not match the {cls.config_class.__name__} "
                f"it is loaded with (was it saved from a different config?):\n" + "\n".join(problems)
            )
        return (model, info) if return_loading_info else model
