// Finding and loading plugins.
//
//   PluginRegistry plugins(plugin_search_dirs(pipeline_paths));
//   std::shared_ptr<LoadedPlugin> vae = plugins.get("vae");     // HostError(3) when broken
//   std::shared_ptr<kiln::Task> task = vae->create_task("train", params, ctx);
//
// Loading order (nothing of the plugin's C++ runs before its descriptor passed): dlopen with
// Boost.DLL; read the `kiln_plugin_descriptor` alias; check its magic, size, ABI version and
// toolchain; only then call the `kiln_create_plugin` factory and info(), catching everything.
//
// Lifetime: every object the plugin creates is held by a std::shared_ptr whose deleter owns a
// reference to the library (OpenVINO's SoPtr idea), so the code of an object's destructor is
// always still mapped when it runs, in whatever order the host drops plugin, task and library.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <boost/dll/shared_library.hpp>

#include "kiln/plugin.hpp"

namespace kiln::host {

using Library = boost::dll::shared_library;

// `object` (created by code in `lib`) owned so that it is destroyed before `lib` can unload.
template <typename T>
std::shared_ptr<T> hold_with_library(T* object, std::shared_ptr<const Library> lib) {
  return std::shared_ptr<T>(object, [lib = std::move(lib)](T* p) mutable {
    delete p;     // runs the plugin's destructor while its code is mapped
    lib.reset();  // then, possibly, dlclose
  });
}

// Tensors a plugin returned, cut from their autograd history (whose nodes may be plugin code),
// so they stay valid after the plugin is gone. An undefined tensor is a kiln::Error naming
// `what` ("the plugin's exported model") and the key.
TensorMap detach_tensors(const TensorMap& tensors, const std::string& what);

struct DescriptorInfo {
  std::uint32_t abi_version = 0;
  std::string sdk_version;
  std::string toolchain;
  std::string name;
};

class LoadedPlugin {
 public:
  const std::filesystem::path& path() const { return path_; }
  const DescriptorInfo& descriptor() const { return descriptor_; }
  const PluginInfo& info() const { return info_; }
  const std::string& name() const { return info_.name; }
  const std::shared_ptr<Plugin>& plugin() const { return plugin_; }
  const std::shared_ptr<const Library>& library() const { return library_; }
  // Calls the plugin's create_task; the task keeps the library loaded. Exceptions of the plugin
  // propagate (kiln::Error for bad input); a null task becomes a kiln::Error.
  std::shared_ptr<Task> create_task(const std::string& task, const Params& params,
                                    TaskContext& ctx) const;

 private:
  friend std::shared_ptr<LoadedPlugin> load_plugin(const std::filesystem::path& file);
  std::filesystem::path path_;
  DescriptorInfo descriptor_;
  PluginInfo info_;
  std::shared_ptr<const Library> library_;
  std::shared_ptr<Plugin> plugin_;
};

// Loads `file`; throws HostError(kExitPlugin) with "cannot load plugin ...: <reason>".
std::shared_ptr<LoadedPlugin> load_plugin(const std::filesystem::path& file);

// "kiln_vae.so" -> "vae"; "" when the file name does not follow the convention.
std::string plugin_name_from_file(const std::filesystem::path& file);

struct SearchDir {
  std::filesystem::path dir;
  std::string origin;  // "pipeline [plugins].paths", "KILN_PLUGIN_PATH", "build tree", ...
};

// The folders searched, in order: `pipeline_paths`, KILN_PLUGIN_PATH (colon-separated), the
// build tree's plugin folder (only when this kiln runs from the build tree), and the install
// prefix's plugin folder (<exe dir>/../<libdir>/kiln/plugins). Duplicates are dropped.
std::vector<SearchDir> plugin_search_dirs(const std::vector<std::filesystem::path>& pipeline_paths);

struct Candidate {
  std::string name;
  std::filesystem::path path;
  std::string origin;
  std::filesystem::path shadowed_by;  // non-empty: an earlier folder has a plugin of this name
};

// Every kiln_*.so in `dirs`, folder by folder (file names sorted within a folder).
std::vector<Candidate> find_candidates(const std::vector<SearchDir>& dirs);

class PluginRegistry {
 public:
  explicit PluginRegistry(std::vector<SearchDir> dirs);
  // The first plugin named `name` in the search order, loaded once. An unknown name throws
  // HostError(kExitUsage) listing what exists; a broken plugin HostError(kExitPlugin).
  std::shared_ptr<LoadedPlugin> get(const std::string& name);
  const std::vector<Candidate>& candidates() const { return candidates_; }
  const std::vector<SearchDir>& dirs() const { return dirs_; }
  std::vector<std::string> names() const;

 private:
  std::vector<SearchDir> dirs_;
  std::vector<Candidate> candidates_;
  std::map<std::string, std::shared_ptr<LoadedPlugin>> loaded_;
};

}  // namespace kiln::host
