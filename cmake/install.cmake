# What `cmake --install` lays out besides the binaries: the client library's
# pkg-config file and CMake package, systemd units, the default
# configuration, man pages and bash completion. Included from the top
# CMakeLists.txt after every target is defined.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

# Where tokend.conf goes. GNUInstallDirs maps prefix /usr to /etc only in
# CMAKE_INSTALL_FULL_SYSCONFDIR, which as an install destination would
# escape `cmake --install --prefix P`; so a relative SYSCONFDIR stays under
# the prefix, and an absolute one (Debian's rules pass /etc) is used as is.
# The units name the same path as the file is installed to.
set(TOKEND_CONF_DIR "${CMAKE_INSTALL_SYSCONFDIR}/tokend")
if(IS_ABSOLUTE "${CMAKE_INSTALL_SYSCONFDIR}")
  set(TOKEND_CONF "${TOKEND_CONF_DIR}/tokend.conf")
else()
  set(TOKEND_CONF "${CMAKE_INSTALL_PREFIX}/${TOKEND_CONF_DIR}/tokend.conf")
endif()
set(TOKEND_SYSTEMD_UNITDIR "lib/systemd/system" CACHE STRING
  "where the systemd units go (relative: under the prefix; systemd reads \
/lib, /usr/lib and /usr/local/lib/systemd/system)")
set(TOKEND_BASH_COMPLETIONDIR
  "${CMAKE_INSTALL_DATADIR}/bash-completion/completions" CACHE STRING
  "where tokenctl's bash completion goes")

# --- libtokend-client for other programs: pkg-config and CMake ---
file(RELATIVE_PATH TOKEND_PC_TO_PREFIX
  "${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_LIBDIR}/pkgconfig"
  "${CMAKE_INSTALL_PREFIX}")
string(REGEX REPLACE "/$" "" TOKEND_PC_TO_PREFIX "${TOKEND_PC_TO_PREFIX}")
configure_file(${CMAKE_SOURCE_DIR}/cmake/tokend-client.pc.in
  ${CMAKE_BINARY_DIR}/pkg/tokend-client.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/pkg/tokend-client.pc
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

set(TOKEND_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/tokend-client)
install(EXPORT tokend-client-targets NAMESPACE tokend::
  FILE tokend-client-targets.cmake DESTINATION ${TOKEND_CMAKE_DIR})
configure_package_config_file(${CMAKE_SOURCE_DIR}/cmake/tokend-client-config.cmake.in
  ${CMAKE_BINARY_DIR}/pkg/tokend-client-config.cmake
  INSTALL_DESTINATION ${TOKEND_CMAKE_DIR})
# The soname is 0 and the API only grows within it: any 0.x satisfies a
# request for an older 0.y.
write_basic_package_version_file(
  ${CMAKE_BINARY_DIR}/pkg/tokend-client-config-version.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)
install(FILES ${CMAKE_BINARY_DIR}/pkg/tokend-client-config.cmake
  ${CMAKE_BINARY_DIR}/pkg/tokend-client-config-version.cmake
  DESTINATION ${TOKEND_CMAKE_DIR})

# --- systemd units and the default configuration ---
# The units name the installed daemon and configuration, so they are
# configured for this prefix (the Debian package: /usr/sbin/tokend and
# /etc/tokend/tokend.conf).
set(TOKEND_SBIN "${CMAKE_INSTALL_FULL_SBINDIR}/tokend")
foreach(unit IN ITEMS tokend.service tokend.socket tokend-http.socket)
  configure_file(${CMAKE_SOURCE_DIR}/systemd/${unit}.in
    ${CMAKE_BINARY_DIR}/systemd/${unit} @ONLY)
  install(FILES ${CMAKE_BINARY_DIR}/systemd/${unit}
    DESTINATION ${TOKEND_SYSTEMD_UNITDIR})
endforeach()
install(FILES ${CMAKE_SOURCE_DIR}/conf/tokend.conf
  DESTINATION ${TOKEND_CONF_DIR})

# --- man pages (scdoc sources in docs/man/), when scdoc is there ---
find_program(TOKEND_SCDOC scdoc)
if(TOKEND_SCDOC)
  set(tokend_man_pages)
  foreach(page IN ITEMS tokend.8 tokend-admin.8 tokenctl.1 tokend.conf.5)
    string(REGEX MATCH "[0-9]$" section ${page})
    add_custom_command(OUTPUT ${CMAKE_BINARY_DIR}/man/${page}
      COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/man
      COMMAND ${TOKEND_SCDOC} < ${CMAKE_SOURCE_DIR}/docs/man/${page}.scd
              > ${CMAKE_BINARY_DIR}/man/${page}
      DEPENDS ${CMAKE_SOURCE_DIR}/docs/man/${page}.scd
      COMMENT "scdoc docs/man/${page}.scd")
    list(APPEND tokend_man_pages ${CMAKE_BINARY_DIR}/man/${page})
    install(FILES ${CMAKE_BINARY_DIR}/man/${page}
      DESTINATION ${CMAKE_INSTALL_MANDIR}/man${section})
  endforeach()
  add_custom_target(man ALL DEPENDS ${tokend_man_pages})
else()
  message(STATUS "scdoc not found: the man pages are not built "
    "(scripts/install-deps.sh installs it)")
endif()

# --- bash completion for tokenctl ---
install(FILES ${CMAKE_SOURCE_DIR}/completion/tokenctl
  DESTINATION ${TOKEND_BASH_COMPLETIONDIR})
