# Install rules for mp, included by the top-level CMakeLists.txt when MP_INSTALL is ON.
#
# `cmake --install <build> [--prefix DIR]` installs
#   include/mp/**                      the public headers (detail/ included)
#   <libdir>/libmp.a (or .so)          the library
#   <libdir>/cmake/mp/mpTargets.cmake  the exported target, as mp::mp
#   <libdir>/cmake/mp/mpConfig.cmake, mpConfigVersion.cmake   for find_package(mp CONFIG)
#   <libdir>/pkgconfig/mp.pc           for pkg-config
# and, when it was built, the component mp::listener (Listener/Client; needs libcrypto):
#   <libdir>/libmp_listener.a (or .so), <libdir>/cmake/mp/mpListenerTargets.cmake
#   <libdir>/pkgconfig/mp-listener.pc
# so that a consumer writes find_package(mp CONFIG REQUIRED) and
# target_link_libraries(app PRIVATE mp::mp). Everything installed is relocatable:
# tests/packaging/run.sh installs into a temporary prefix and builds against it.

include(CMakePackageConfigHelpers)

set(MP_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/mp"
    CACHE STRING "Where mpConfig.cmake goes, relative to the install prefix")
set(MP_INSTALL_PKGCONFIGDIR "${CMAKE_INSTALL_LIBDIR}/pkgconfig"
    CACHE STRING "Where mp.pc goes, relative to the install prefix")
mark_as_advanced(MP_INSTALL_CMAKEDIR MP_INSTALL_PKGCONFIGDIR)

# The library. The include directory comes from the target's INSTALL_INTERFACE.
install(TARGETS mp EXPORT mpTargets
  ARCHIVE DESTINATION "${CMAKE_INSTALL_LIBDIR}" COMPONENT mp_development
  LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}" COMPONENT mp_runtime
          NAMELINK_COMPONENT mp_development
  RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}" COMPONENT mp_runtime)

# Public headers, detail/ included: mp's templates instantiate them in user code.
install(DIRECTORY "${PROJECT_SOURCE_DIR}/lib/include/mp"
  DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}" COMPONENT mp_development
  FILES_MATCHING PATTERN "*.hpp" PATTERN "*.h")

install(EXPORT mpTargets
  NAMESPACE mp::
  FILE mpTargets.cmake
  DESTINATION "${MP_INSTALL_CMAKEDIR}" COMPONENT mp_development)

# The components, each in its own export set (mpListenerTargets.cmake, ...) that
# mpConfig.cmake loads only when a consumer asks for the component
# (find_package(mp COMPONENTS listener)), so that each dependency is looked for only by
# those who use it: listener needs OpenSSL's libcrypto, interprocess (header-only)
# Boost's headers, mpi MPI, stacktrace (remote tracebacks) Boost.Stacktrace.
foreach(component IN ITEMS listener interprocess mpi stacktrace)
  if(NOT TARGET mp_${component})
    continue()
  endif()
  string(SUBSTRING "${component}" 0 1 first)
  string(SUBSTRING "${component}" 1 -1 rest)
  string(TOUPPER "${first}" first)
  set(export "mp${first}${rest}Targets")
  install(TARGETS mp_${component} EXPORT ${export}
    ARCHIVE DESTINATION "${CMAKE_INSTALL_LIBDIR}" COMPONENT mp_development
    LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}" COMPONENT mp_runtime
            NAMELINK_COMPONENT mp_development
    RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}" COMPONENT mp_runtime)
  install(EXPORT ${export}
    NAMESPACE mp::
    FILE ${export}.cmake
    DESTINATION "${MP_INSTALL_CMAKEDIR}" COMPONENT mp_development)
endforeach()

configure_package_config_file("${CMAKE_CURRENT_LIST_DIR}/mpConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/mpConfig.cmake"
  INSTALL_DESTINATION "${MP_INSTALL_CMAKEDIR}")
write_basic_package_version_file("${PROJECT_BINARY_DIR}/mpConfigVersion.cmake"
  VERSION "${PROJECT_VERSION}"
  COMPATIBILITY SameMinorVersion) # 0.x: minor versions may break
install(FILES "${PROJECT_BINARY_DIR}/mpConfig.cmake" "${PROJECT_BINARY_DIR}/mpConfigVersion.cmake"
  DESTINATION "${MP_INSTALL_CMAKEDIR}" COMPONENT mp_development)

# pkg-config. The system libraries go to Libs for a static libmp (pkg-config --libs
# omits Libs.private unless --static) and to Libs.private for a shared one. Cflags
# carry -std=c++20 (mp.pc.in): mp's headers need it, and a compiler's default is older.
get_target_property(_mp_type mp TYPE)
set(_mp_pc_system_libs "-pthread")
foreach(_mp_lib IN LISTS CMAKE_DL_LIBS)
  string(APPEND _mp_pc_system_libs " -l${_mp_lib}")
endforeach()
if(_mp_type STREQUAL "STATIC_LIBRARY")
  set(MP_PC_LIBS " ${_mp_pc_system_libs}")
  set(MP_PC_LIBS_PRIVATE "")
else()
  set(MP_PC_LIBS "")
  set(MP_PC_LIBS_PRIVATE "Libs.private: ${_mp_pc_system_libs}")
endif()
# cereal is header-only and ships no .pc file: add its include directory unless the
# compiler searches it anyway (Debian's /usr/include).
set(MP_PC_CFLAGS "")
get_target_property(_mp_cereal_includes cereal::cereal INTERFACE_INCLUDE_DIRECTORIES)
foreach(_mp_dir IN LISTS _mp_cereal_includes)
  if(_mp_dir AND NOT _mp_dir IN_LIST CMAKE_CXX_IMPLICIT_INCLUDE_DIRECTORIES)
    string(APPEND MP_PC_CFLAGS " -I${_mp_dir}")
  endif()
endforeach()
foreach(_mp_dir IN ITEMS LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${_mp_dir}}")
    set(MP_PC_${_mp_dir} "${CMAKE_INSTALL_${_mp_dir}}")
  else()
    set(MP_PC_${_mp_dir} "\${prefix}/${CMAKE_INSTALL_${_mp_dir}}")
  endif()
endforeach()
# The prefix is known only when installing (`cmake --install --prefix DIR` may change
# it), so mp.pc is configured twice: now with everything else, then at install time
# with the prefix, which this first pass leaves as the placeholder @MP_PC_PREFIX@.
set(MP_PC_PREFIX "@MP_PC_PREFIX@")
configure_file("${CMAKE_CURRENT_LIST_DIR}/mp.pc.in" "${PROJECT_BINARY_DIR}/mp.pc.in" @ONLY)
install(CODE "
  set(MP_PC_PREFIX \"\${CMAKE_INSTALL_PREFIX}\")
  configure_file(\"${PROJECT_BINARY_DIR}/mp.pc.in\" \"${PROJECT_BINARY_DIR}/mp.pc\" @ONLY)
" COMPONENT mp_development)
install(FILES "${PROJECT_BINARY_DIR}/mp.pc"
  DESTINATION "${MP_INSTALL_PKGCONFIGDIR}" COMPONENT mp_development)

# mp-listener.pc: mp::listener, on top of mp.pc and libcrypto's own libcrypto.pc. A
# static library needs libcrypto at link time (Requires); a shared one only privately.
if(TARGET mp_listener)
  if(_mp_type STREQUAL "STATIC_LIBRARY")
    set(MP_PC_LISTENER_REQUIRES "Requires: mp = ${PROJECT_VERSION}, libcrypto")
  else()
    set(MP_PC_LISTENER_REQUIRES "Requires: mp = ${PROJECT_VERSION}\nRequires.private: libcrypto")
  endif()
  configure_file("${CMAKE_CURRENT_LIST_DIR}/mp-listener.pc.in" "${PROJECT_BINARY_DIR}/mp-listener.pc.in" @ONLY)
  install(CODE "
    set(MP_PC_PREFIX \"\${CMAKE_INSTALL_PREFIX}\")
    configure_file(\"${PROJECT_BINARY_DIR}/mp-listener.pc.in\" \"${PROJECT_BINARY_DIR}/mp-listener.pc\" @ONLY)
  " COMPONENT mp_development)
  install(FILES "${PROJECT_BINARY_DIR}/mp-listener.pc"
    DESTINATION "${MP_INSTALL_PKGCONFIGDIR}" COMPONENT mp_development)
  unset(MP_PC_LISTENER_REQUIRES)
endif()

unset(_mp_type)
unset(_mp_pc_system_libs)
unset(_mp_lib)
unset(_mp_cereal_includes)
unset(_mp_dir)
