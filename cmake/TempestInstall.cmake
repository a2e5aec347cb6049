# Install rules, the CMake package (find_package(tempest CONFIG)), one pkg-config file per library
# and the Debian package (CPack DEB: `make package`). Included by the top-level CMakeLists.txt.
include(CMakePackageConfigHelpers)

# `make install` and `make package` install what is built without building all first (the test
# suite and the benchmarks): the scripts build the installed targets explicitly.
set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY ON)

install(DIRECTORY include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS tempest_redis tempest_cache tempest_http EXPORT tempestTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
# `cmake --install --strip` and the Debian package: install(TARGETS) strips executables and shared
# libraries only; the static archives lose their debug information (strip --strip-debug, as
# dh_strip does), which is most of their size in a RelWithDebInfo build.
if(CMAKE_STRIP)
  install(CODE "
    if(CMAKE_INSTALL_DO_STRIP)
      foreach(_lib redis cache http)
        execute_process(COMMAND \"${CMAKE_STRIP}\" --strip-debug
          \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_LIBDIR}/libtempest_\${_lib}.a\"
          COMMAND_ERROR_IS_FATAL ANY)
      endforeach()
    endif()")
endif()

# ---- CMake package --------------------------------------------------------------------------
install(EXPORT tempestTargets NAMESPACE tempest:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/tempest)
configure_package_config_file(cmake/tempestConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/tempestConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/tempest)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/tempestConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/tempestConfig.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/tempestConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/tempest)

# ---- pkg-config: tempest-redis.pc, tempest-cache.pc, tempest-http.pc -----------------------
# The libraries are static archives, so what they link privately (spdlog) is in Requires and
# Libs, not in the .private fields. Boost has no .pc files: -lboost_json is in Libs, and
# Boost.Asio is header-only. The prefix is found from the .pc file's own place (${pcfiledir}), so
# the files work wherever the tree is installed or unpacked (`cmake --install --prefix`, the
# Debian package, `dpkg -x` into a scratch root) with nothing but PKG_CONFIG_PATH.
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  set(TEMPEST_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
else()
  file(RELATIVE_PATH _tempest_pc_up "/prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/prefix")
  string(REGEX REPLACE "/$" "" _tempest_pc_up "${_tempest_pc_up}")
  set(TEMPEST_PC_PREFIX "\${pcfiledir}/${_tempest_pc_up}")
endif()
foreach(_dir LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${_dir}}")
    set(TEMPEST_PC_${_dir} "${CMAKE_INSTALL_${_dir}}")
  else()
    set(TEMPEST_PC_${_dir} "\${prefix}/${CMAKE_INSTALL_${_dir}}")
  endif()
endforeach()
set(_tempest_pc_redis_description "tempest's Redis client (Boost.Asio coroutines, auto-pipelining, Cluster, Sentinel, TLS)")
set(_tempest_pc_redis_requires "openssl spdlog")
set(_tempest_pc_redis_libs "-pthread")
set(_tempest_pc_cache_description "tempest's caching layer: cached functions, tags, invalidation, near cache")
set(_tempest_pc_cache_requires "tempest-redis = ${PROJECT_VERSION}")
set(_tempest_pc_cache_libs "-lboost_json")
set(_tempest_pc_http_description "tempest's HTTP layer: routes, response cache, health and metrics")
set(_tempest_pc_http_requires "tempest-cache = ${PROJECT_VERSION}")
set(_tempest_pc_http_libs "")
foreach(_layer redis cache http)
  set(TEMPEST_PC_NAME "tempest-${_layer}")
  set(TEMPEST_PC_DESCRIPTION "${_tempest_pc_${_layer}_description}")
  set(TEMPEST_PC_REQUIRES "${_tempest_pc_${_layer}_requires}")
  set(TEMPEST_PC_LIB "tempest_${_layer}")
  set(TEMPEST_PC_EXTRA_LIBS "${_tempest_pc_${_layer}_libs}")
  configure_file(cmake/tempest.pc.in ${CMAKE_CURRENT_BINARY_DIR}/pkgconfig/tempest-${_layer}.pc @ONLY)
  install(FILES ${CMAKE_CURRENT_BINARY_DIR}/pkgconfig/tempest-${_layer}.pc
          DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
endforeach()

# ---- Debian package: libtempest-dev ---------------------------------------------------------
# The libraries, the headers, the CMake and pkg-config files and the `tempest` CLI (installed by
# tools/CMakeLists.txt). Depends: the -dev packages a consumer compiles and links against, plus
# what dpkg-shlibdeps finds the CLI needs at run time.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME tempest)
set(CPACK_PACKAGE_VENDOR "tempest")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "C++20 Redis caching primitives on Boost.Asio (development files and CLI)")
set(CPACK_PACKAGE_DESCRIPTION
  "tempest is a C++20 library of Redis caching primitives on Boost.Asio coroutines: a Redis
client (cluster, sentinel, TLS, client-side caching), cached functions with tags and
invalidation, and an HTTP layer with a response cache. This package holds the static
libraries, the headers, the CMake package (find_package(tempest CONFIG)), the pkg-config
files (tempest-redis, tempest-cache, tempest-http) and the tempest command-line tool.")
set(CPACK_PACKAGE_CONTACT "tempest maintainers <maintainers@users.noreply.r-seed-359abda9.example>")
set(CPACK_DEBIAN_PACKAGE_NAME libtempest-dev)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_DEPENDS
  "libboost1.81-dev, libboost-json1.81-dev, libspdlog-dev, libssl-dev")
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
# Stripped as Debian strips its packages: the CLI of everything, the archives of debug info.
set(CPACK_STRIP_FILES ON)
include(CPack)
