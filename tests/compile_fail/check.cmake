# Compiles one source with -fsyntax-only and checks the outcome. Run by ctest:
#   cmake -DCOMPILER=<c++> -DSOURCE=<file.cpp> -DINCLUDE_DIRS=<dir|dir...>
#         -DEXPECT=fail|pass [-DEXPECT_TYPE=<text>] -P check.cmake
# EXPECT=fail: the compiler must reject the source, its FIRST error must be mp's
# "cannot be pickled" message (not cereal's template spew), and when EXPECT_TYPE is
# given the output must name that type as cannot_pickle<EXPECT_TYPE...>.
# EXPECT=pass: the source must compile (proves that flags and include paths work, so
# the failures above are the code's and not the harness's).
foreach(var COMPILER SOURCE INCLUDE_DIRS EXPECT)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "check.cmake: ${var} is not set")
  endif()
endforeach()

string(REPLACE "|" ";" include_dirs "${INCLUDE_DIRS}")
set(args -std=c++20 -fsyntax-only -fdiagnostics-color=never)
foreach(dir IN LISTS include_dirs)
  list(APPEND args "-I${dir}")
endforeach()

execute_process(
  COMMAND "${COMPILER}" ${args} "${SOURCE}"
  RESULT_VARIABLE result
  OUTPUT_VARIABLE output
  ERROR_VARIABLE output)

if(EXPECT STREQUAL "pass")
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "${SOURCE} should compile but does not:\n${output}")
  endif()
  return()
endif()

if(result EQUAL 0)
  message(FATAL_ERROR "${SOURCE} compiled, but it must be rejected: it pickles a type that "
                      "cannot be pickled")
endif()
string(FIND "${output}" "cannot be pickled" found)
if(found EQUAL -1)
  message(FATAL_ERROR "${SOURCE} was rejected without mp's message (\"cannot be pickled\"):\n"
                      "${output}")
endif()
string(REGEX MATCH "error: [^\n]*" first_error "${output}")
string(FIND "${first_error}" "cannot be pickled" first_is_ours)
if(first_is_ours EQUAL -1)
  message(FATAL_ERROR "${SOURCE}: the first error is not mp's message but:\n${first_error}\n\n"
                      "${output}")
endif()
if(DEFINED EXPECT_TYPE AND NOT EXPECT_TYPE STREQUAL "")
  # Compared without spaces: g++ writes "const int*", clang++ "const int *". clang++
  # names a lambda by its place ("(lambda at file:line:col)"), g++ by its function.
  string(REPLACE " " "" spaceless_output "${output}")
  string(REPLACE " " "" spaceless_type "${EXPECT_TYPE}")
  string(FIND "${spaceless_output}" "cannot_pickle<${spaceless_type}" named)
  if(named EQUAL -1 AND spaceless_type MATCHES "<lambda\\(")
    string(FIND "${spaceless_output}" "cannot_pickle<(lambdaat" named)
  endif()
  if(named EQUAL -1)
    message(FATAL_ERROR "${SOURCE}: the error does not name the type: expected "
                        "\"cannot_pickle<${EXPECT_TYPE}...\" in:\n${output}")
  endif()
endif()
