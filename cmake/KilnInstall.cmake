# What `cmake --install build --prefix P` puts under P besides the targets' own install() rules
# (libkiln_sdk.so and the headers in sdk/, `kiln` in host/, plugins through kiln_add_plugin):
#
#   P/lib/cmake/Kiln/KilnConfig.cmake          find_package(Kiln) -> Kiln::sdk, kiln_add_plugin()
#   P/lib/cmake/Kiln/KilnConfigVersion.cmake
#   P/lib/cmake/Kiln/KilnTargets*.cmake         the exported Kiln::sdk
#   P/lib/cmake/Kiln/KilnPlugin.cmake           kiln_add_plugin()
#   P/lib/pkgconfig/kiln.pc                     pkg-config --cflags --libs kiln
#
# Every path in them is relative to the file itself, so the prefix can be chosen at install time
# and the tree moved afterwards.
include(CMakePackageConfigHelpers)

set(KILN_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/Kiln)

install(EXPORT KilnTargets NAMESPACE Kiln:: DESTINATION ${KILN_INSTALL_CMAKEDIR})
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/KilnConfig.cmake.in
  ${CMAKE_BINARY_DIR}/package/KilnConfig.cmake
  INSTALL_DESTINATION ${KILN_INSTALL_CMAKEDIR}
  PATH_VARS CMAKE_INSTALL_INCLUDEDIR KILN_INSTALL_PLUGINDIR CMAKE_INSTALL_BINDIR)
# 0.x: a minor release may change the API, so only the same major.minor is compatible. (Whether
# a built plugin loads is decided by KILN_ABI_VERSION at load time, not by this file.)
write_basic_package_version_file(${CMAKE_BINARY_DIR}/package/KilnConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/package/KilnConfig.cmake
              ${CMAKE_BINARY_DIR}/package/KilnConfigVersion.cmake
              ${CMAKE_CURRENT_LIST_DIR}/KilnPlugin.cmake
        DESTINATION ${KILN_INSTALL_CMAKEDIR})

configure_file(${CMAKE_CURRENT_LIST_DIR}/kiln.pc.in ${CMAKE_BINARY_DIR}/package/kiln.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/package/kiln.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
