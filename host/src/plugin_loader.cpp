#include "plugin_loader.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <set>
#include <sstream>

#include <boost/core/demangle.hpp>
#include <boost/dll/runtime_symbol_info.hpp>

#include "host_error.hpp"
#include "text.hpp"

namespace kiln::host {
namespace fs = std::filesystem;

namespace {

std::string bounded(const char* s, std::size_t max) {
  return std::string(s, strnlen(s, max));
}

std::string what_of(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const Error& x) {
    return x.what();
  } catch (const std::exception& x) {
    return std::string(x.what()) + " (" + boost::core::demangle(typeid(x).name()) +
           ", not kiln::Error: plugins should report problems with kiln::Error)";
  } catch (...) {
    return "an exception that is not a std::exception";
  }
}

[[noreturn]] void refuse(const fs::path& file, const std::string& reason) {
  const std::string name = plugin_name_from_file(file);
  throw plugin_error("cannot load plugin " + (name.empty() ? "" : "'" + name + "' ") + "from " +
                     file.string() + ": " + reason);
}

// The dynamic linker's message when the plugin needs libkiln_sdk.so.<N> and no such library is
// installed: the SDK's SONAME carries the plugin ABI version, so this is a plugin built for ABI
// N. Returns the refusal naming both versions, or "" for any other failure.
std::string missing_sdk_reason(const std::string& dl_error) {
  const std::string lib = "libkiln_sdk.so.";
  const std::size_t at = dl_error.find(lib);
  if (at == std::string::npos) return "";
  std::size_t end = at + lib.size();
  while (end < dl_error.size() && dl_error[end] >= '0' && dl_error[end] <= '9') ++end;
  if (end == at + lib.size() || dl_error.compare(end, 2, ": ") != 0) return "";
  const std::string abi = dl_error.substr(at + lib.size(), end - at - lib.size());
  if (abi == std::to_string(KILN_ABI_VERSION)) return "";
  return "it was built for Kiln plugin ABI version " + abi + " (it needs " +
         dl_error.substr(at, end - at) +
         ", which is not installed), but this kiln uses ABI version " +
         std::to_string(KILN_ABI_VERSION) +
         " (Kiln " KILN_VERSION_STRING "); rebuild the plugin against this Kiln SDK";
}

DescriptorInfo read_descriptor(const Library& lib, const fs::path& file) {
  if (!lib.has("kiln_plugin_descriptor")) {
    refuse(file,
           "it is not a Kiln plugin: it exports no 'kiln_plugin_descriptor' (a plugin declares "
           "itself with KILN_PLUGIN(Class, \"name\") from <kiln/plugin.hpp>)");
  }
  const auto& d = lib.get_alias<const KilnPluginDescriptor>("kiln_plugin_descriptor");
  if (d.magic != kKilnPluginMagic) {
    std::ostringstream os;
    os << "its descriptor is damaged (magic 0x" << std::hex << d.magic << ", expected 0x"
       << kKilnPluginMagic << "); rebuild the plugin against this Kiln SDK";
    refuse(file, os.str());
  }
  if (d.abi_version != KILN_ABI_VERSION) {
    refuse(file, "it was built for Kiln plugin ABI version " + std::to_string(d.abi_version) +
                     ", but this kiln uses ABI version " + std::to_string(KILN_ABI_VERSION) +
                     " (Kiln " KILN_VERSION_STRING "); rebuild the plugin against this Kiln SDK");
  }
  if (d.descriptor_size < sizeof(KilnPluginDescriptor)) {
    refuse(file, "its descriptor is " + std::to_string(d.descriptor_size) + " bytes, expected " +
                     std::to_string(sizeof(KilnPluginDescriptor)) +
                     "; rebuild the plugin against this Kiln SDK");
  }
  DescriptorInfo info;
  info.abi_version = d.abi_version;
  info.sdk_version = bounded(d.sdk_version, sizeof d.sdk_version);
  info.toolchain = bounded(d.toolchain, sizeof d.toolchain);
  info.name = bounded(d.name, sizeof d.name);
  if (info.toolchain != KILN_TOOLCHAIN_ID) {
    refuse(file, "it was built with C++ runtime '" + info.toolchain + "', but this kiln uses '" +
                     KILN_TOOLCHAIN_ID + "'; rebuild the plugin with the same compiler");
  }
  if (info.name.empty()) refuse(file, "its descriptor has an empty plugin name");
  const std::string file_name = plugin_name_from_file(file);
  if (!file_name.empty() && file_name != info.name) {
    refuse(file, "the file is named for plugin '" + file_name + "' but declares itself '" +
                     info.name + "'; name the file kiln_" + info.name + ".so");
  }
  return info;
}

}  // namespace

std::string plugin_name_from_file(const fs::path& file) {
  const std::string f = file.filename().string();
  if (f.size() <= 8 || f.rfind("kiln_", 0) != 0 || f.substr(f.size() - 3) != ".so") return "";
  return f.substr(5, f.size() - 8);
}

TensorMap detach_tensors(const TensorMap& tensors, const std::string& what) {
  TensorMap out;
  for (const auto& [k, t] : tensors) {
    KILN_CHECK(t.defined(), what, " holds an undefined tensor '", k, "'");
    out[k] = t.detach();
  }
  return out;
}

std::shared_ptr<Task> LoadedPlugin::create_task(const std::string& task, const Params& params,
                                                TaskContext& ctx) const {
  std::unique_ptr<Task> t = plugin_->create_task(task, params, ctx);
  KILN_CHECK(t != nullptr, "plugin '", name(), "' returned no task for '", task, "'");
  return hold_with_library(t.release(), library_);
}

std::shared_ptr<LoadedPlugin> load_plugin(const fs::path& file) {
  std::error_code fec;
  if (!fs::exists(file, fec)) refuse(file, "the file does not exist");
  if (!fs::is_regular_file(file, fec)) refuse(file, "it is not a regular file");

  auto lib = std::make_shared<Library>();
  boost::dll::fs::error_code ec;
  dlerror();  // clear any earlier message
  lib->load(fs::absolute(file), ec,
            boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
  if (ec || !lib->is_loaded()) {
    const char* why = dlerror();
    if (why) {
      if (const std::string abi = missing_sdk_reason(why); !abi.empty()) refuse(file, abi);
    }
    refuse(file, std::string("it is not a loadable shared library (") +
                     (why ? why : ec.message().c_str()) + ")");
  }

  auto loaded = std::make_shared<LoadedPlugin>();
  loaded->path_ = fs::absolute(file).lexically_normal();
  loaded->descriptor_ = read_descriptor(*lib, file);

  if (!lib->has("kiln_create_plugin")) {
    refuse(file, "it exports no 'kiln_create_plugin' factory (use KILN_PLUGIN(Class, \"" +
                     loaded->descriptor_.name + "\"))");
  }
  auto& factory = lib->get_alias<Plugin*()>("kiln_create_plugin");
  std::shared_ptr<const Library> shared_lib = lib;
  Plugin* raw = nullptr;
  try {
    raw = factory();
  } catch (...) {
    refuse(file, "its factory threw: " + what_of(std::current_exception()));
  }
  if (raw == nullptr) refuse(file, "its factory returned no plugin object");
  loaded->plugin_ = hold_with_library(raw, shared_lib);
  loaded->library_ = shared_lib;
  try {
    loaded->info_ = loaded->plugin_->info();
  } catch (...) {
    refuse(file, "its info() threw: " + what_of(std::current_exception()));
  }
  if (loaded->info_.name != loaded->descriptor_.name) {
    refuse(file, "info() names the plugin '" + loaded->info_.name + "' but its descriptor says '" +
                     loaded->descriptor_.name + "'");
  }
  if (loaded->info_.tasks.empty()) refuse(file, "it declares no tasks");
  return loaded;
}

std::vector<SearchDir> plugin_search_dirs(const std::vector<fs::path>& pipeline_paths) {
  std::vector<SearchDir> dirs;
  std::set<fs::path> seen;
  auto add = [&](const fs::path& d, const std::string& origin) {
    if (d.empty()) return;
    std::error_code ec;
    fs::path key = fs::weakly_canonical(d, ec);
    if (ec) key = fs::absolute(d).lexically_normal();
    if (seen.insert(key).second) dirs.push_back({key, origin});
  };
  for (const fs::path& p : pipeline_paths) add(p, "pipeline [plugins].paths");
  if (const char* env = std::getenv("KILN_PLUGIN_PATH")) {
    std::stringstream ss(env);
    std::string item;
    while (std::getline(ss, item, ':')) add(item, "KILN_PLUGIN_PATH");
  }
  std::error_code ec;
  const fs::path exe_dir = boost::dll::program_location(ec).parent_path();
  if (!ec) {
#ifdef KILN_BUILD_TREE_BIN_DIR
    std::error_code eq;
    if (fs::equivalent(exe_dir, KILN_BUILD_TREE_BIN_DIR, eq)) {
      add(KILN_BUILD_TREE_PLUGIN_DIR, "build tree");
    }
#endif
    add(exe_dir / ".." / KILN_INSTALL_PLUGIN_SUBDIR, "install prefix");
  }
  return dirs;
}

std::vector<Candidate> find_candidates(const std::vector<SearchDir>& dirs) {
  std::vector<Candidate> out;
  std::map<std::string, fs::path> first;
  for (const SearchDir& d : dirs) {
    std::error_code ec;
    std::vector<fs::path> files;
    for (fs::directory_iterator it(d.dir, ec), end; !ec && it != end; it.increment(ec)) {
      if (!plugin_name_from_file(it->path()).empty()) files.push_back(it->path());
    }
    std::sort(files.begin(), files.end());
    for (const fs::path& f : files) {
      Candidate c{plugin_name_from_file(f), f, d.origin, {}};
      auto [it, fresh] = first.emplace(c.name, f);
      if (!fresh) c.shadowed_by = it->second;
      out.push_back(std::move(c));
    }
  }
  return out;
}

PluginRegistry::PluginRegistry(std::vector<SearchDir> dirs)
    : dirs_(std::move(dirs)), candidates_(find_candidates(dirs_)) {}

std::vector<std::string> PluginRegistry::names() const {
  std::vector<std::string> n;
  for (const Candidate& c : candidates_) {
    if (c.shadowed_by.empty()) n.push_back(c.name);
  }
  return n;
}

std::shared_ptr<LoadedPlugin> PluginRegistry::get(const std::string& name) {
  if (auto it = loaded_.find(name); it != loaded_.end()) return it->second;
  for (const Candidate& c : candidates_) {
    if (c.name == name && c.shadowed_by.empty()) {
      auto p = load_plugin(c.path);
      loaded_[name] = p;
      return p;
    }
  }
  std::string where;
  for (const SearchDir& d : dirs_) where += "\n  " + d.dir.string() + "  (" + d.origin + ")";
  const std::vector<std::string> known = names();
  throw usage_error("unknown plugin '" + name + "'" + did_you_mean(name, known) + "; " +
                    (known.empty() ? std::string("no plugins were found")
                                   : "plugins found: " + quoted_list(known)) +
                    ". Searched:" + (where.empty() ? std::string(" (no folders)") : where) +
                    "\nAdd a folder with [plugins] paths in the pipeline or KILN_PLUGIN_PATH.");
}

}  // namespace kiln::host
