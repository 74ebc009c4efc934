# kiln_add_plugin(<name> SOURCES <file>... [LIBS <target>...] [OUTPUT_DIR <dir>] [NO_INSTALL])
#
# Builds the Kiln model plugin `kiln_<name>.so`: a shared library linked against Kiln::sdk, with
# hidden symbol visibility (only the KILN_PLUGIN entry points are exported) and no undefined
# symbols left for load time. The `kiln` host finds it by that file name.
#
#   find_package(Kiln REQUIRED)          # out of tree; in the Kiln tree Kiln::sdk already exists
#   kiln_add_plugin(myvae SOURCES src/myvae.cpp)
#
#   LIBS        extra libraries to link (privately)
#   OUTPUT_DIR  where the .so is written; default ${KILN_PLUGIN_OUTPUT_DIR}, or
#               ${CMAKE_BINARY_DIR}/plugins when that is not set
#   NO_INSTALL  do not install it (test plugins); otherwise it is installed to
#               ${KILN_INSTALL_PLUGINDIR}, default ${CMAKE_INSTALL_LIBDIR}/kiln/plugins
#
# The target is called kiln_plugin_<name>. This file is self-contained so that it can be
# installed with the SDK for plugins built outside the Kiln tree.
include_guard(GLOBAL)
include(GNUInstallDirs)

function(kiln_add_plugin name)
  cmake_parse_arguments(ARG "NO_INSTALL" "OUTPUT_DIR" "SOURCES;LIBS" ${ARGN})
  if(NOT name MATCHES "^[a-z0-9_]+$")
    message(FATAL_ERROR "kiln_add_plugin: plugin name '${name}' must use only a-z, 0-9 and _")
  endif()
  if(NOT ARG_SOURCES)
    message(FATAL_ERROR "kiln_add_plugin(${name}): no SOURCES given")
  endif()
  if(ARG_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "kiln_add_plugin(${name}): unknown arguments ${ARG_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT TARGET Kiln::sdk)
    message(FATAL_ERROR "kiln_add_plugin(${name}): Kiln::sdk is not defined; "
                        "call find_package(Kiln) first")
  endif()

  set(output_dir ${ARG_OUTPUT_DIR})
  if(NOT output_dir)
    set(output_dir ${KILN_PLUGIN_OUTPUT_DIR})
  endif()
  if(NOT output_dir)
    set(output_dir ${CMAKE_BINARY_DIR}/plugins)
  endif()
  set(install_dir ${KILN_INSTALL_PLUGINDIR})
  if(NOT install_dir)
    set(install_dir ${CMAKE_INSTALL_LIBDIR}/kiln/plugins)
  endif()

  set(target kiln_plugin_${name})
  add_library(${target} SHARED ${ARG_SOURCES})
  set_target_properties(${target} PROPERTIES
    PREFIX ""
    OUTPUT_NAME kiln_${name}
    LIBRARY_OUTPUT_DIRECTORY ${output_dir}
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON
    # Installed plugins sit in <prefix>/<libdir>/kiln/plugins; the SDK two levels up.
    INSTALL_RPATH "$ORIGIN/../..")
  target_link_libraries(${target} PRIVATE Kiln::sdk ${ARG_LIBS})
  target_link_options(${target} PRIVATE -Wl,--no-undefined)
  if(COMMAND kiln_target_defaults)
    kiln_target_defaults(${target})  # Kiln's own warning and sanitizer flags, in the Kiln tree
  endif()
  if(NOT ARG_NO_INSTALL)
    install(TARGETS ${target} LIBRARY DESTINATION ${install_dir})
  endif()
endfunction()
