#include "host_keys.hpp"

namespace kiln::host {

std::vector<ParamSpec> host_key_specs(const TaskSpec& spec, std::int64_t pipeline_seed) {
  std::vector<ParamSpec> keys;
  auto add = [&](ParamSpec p) { keys.push_back(std::move(p)); };
  switch (spec.kind) {
    case TaskKind::train:
      add(ParamSpec::integer("epochs", spec.default_epochs, "Passes over the training data")
              .at_least(1));
      add(ParamSpec::integer("max_steps", 0,
                             "Stop after this many optimisation steps in total (0: no limit)")
              .at_least(0));
      add(ParamSpec::integer("batch_size", spec.default_batch, "Examples per optimisation step")
              .at_least(1));
      add(ParamSpec::boolean("shuffle", true,
                             "Visit the examples in a seeded random order, new each epoch"));
      add(ParamSpec::integer("checkpoint_every", kDefaultCheckpointEvery,
                             "Write a checkpoint every this many steps (0: only at the end)")
              .at_least(0));
      add(ParamSpec::integer("keep_checkpoints", kDefaultKeepCheckpoints,
                             "Periodic checkpoints kept besides the final one")
              .at_least(1));
      add(ParamSpec::integer("eval_every", 1,
                             "Evaluate every this many epochs (0: only at the end)")
              .at_least(0));
      add(ParamSpec::integer("log_every", kDefaultLogEvery,
                             "Log averaged metrics every this many steps")
              .at_least(1));
      break;
    case TaskKind::generate:
      add(ParamSpec::integer("count", 0,
                             "Samples to generate (default: the task's own count, if it has one)")
              .at_least(1)
              .make_optional());
      add(ParamSpec::integer("batch", spec.default_batch, "Samples computed together").at_least(1));
      add(ParamSpec::integer("grid", 0, "Columns of grid.png made of all images (0: no grid)")
              .at_least(0));
      add(ParamSpec::boolean("stream", false,
                             "Print text as the task produces it (useful with count = 1)"));
      break;
    case TaskKind::run:
      break;
  }
  add(ParamSpec::integer("seed", pipeline_seed,
                         "Seed of this stage's randomness (default: [pipeline] seed)")
          .at_least(0));
  return keys;
}

}  // namespace kiln::host
