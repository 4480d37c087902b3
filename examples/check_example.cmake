# Runs one example and checks its output against the lines the Python program prints.
#
#   cmake -DEXPECT_FILE=f.expect [-DTIMEOUT=25] -P check_example.cmake -- EXAMPLE [ARGS...]
#
# EXPECT_FILE holds one expectation per line (written by mp_example() in CMakeLists.txt):
#   REGEX      some output line matches REGEX entirely (CMake regex syntax: no \d, no {n});
#              each expectation takes a line of its own, so a repeated REGEX needs as many
#              matching lines
#   N*REGEX    N lines match REGEX
#   --         an ordering point: every line matched after it comes after every line
#              matched before it
#   ~[N*]REGEX as REGEX or N*REGEX, but anywhere in the output: ordering points neither
#              restrict nor count it
# The example must also exit with status 0 within TIMEOUT seconds. Lines are compared
# without the processes' order where no "--" says otherwise, since processes interleave.
cmake_minimum_required(VERSION 3.22)

if(NOT DEFINED TIMEOUT)
  set(TIMEOUT 25)
endif()

# The command: everything after "--".
set(command)
set(after_dashes OFF)
math(EXPR last "${CMAKE_ARGC} - 1")
foreach(i RANGE 1 ${last})
  if(after_dashes)
    list(APPEND command "${CMAKE_ARGV${i}}")
  elseif(CMAKE_ARGV${i} STREQUAL "--")
    set(after_dashes ON)
  endif()
endforeach()
if(NOT command)
  message(FATAL_ERROR "usage: cmake -DEXPECT_FILE=F -P check_example.cmake -- EXAMPLE [ARGS...]")
endif()

execute_process(
  COMMAND ${command}
  OUTPUT_VARIABLE output
  ERROR_VARIABLE errors
  RESULT_VARIABLE status
  TIMEOUT ${TIMEOUT})
message("${output}")
if(errors)
  message("stderr:\n${errors}")
endif()
if(NOT status STREQUAL "0")
  message(FATAL_ERROR "FAIL: the example exited with '${status}'")
endif()

# Splits `text` into variables <prefix>_0, <prefix>_1, ... and sets <prefix>_count. Not
# CMake lists: output lines hold brackets and semicolons that lists would mangle.
function(split_lines text prefix)
  set(n 0)
  while(NOT text STREQUAL "")
    string(FIND "${text}" "\n" newline)
    if(newline EQUAL -1)
      set(line "${text}")
      set(text "")
    else()
      string(SUBSTRING "${text}" 0 ${newline} line)
      math(EXPR rest "${newline} + 1")
      string(SUBSTRING "${text}" ${rest} -1 text)
    endif()
    set(${prefix}_${n} "${line}" PARENT_SCOPE)
    math(EXPR n "${n} + 1")
  endwhile()
  set(${prefix}_count ${n} PARENT_SCOPE)
endfunction()

split_lines("${output}" out)
file(READ "${EXPECT_FILE}" expectations)
split_lines("${expectations}" want)

set(failures "")
set(first_allowed 0) # lines before this index belong to earlier ordering groups
set(group_end -1)    # the last line matched in the current group
if(want_count GREATER 0)
  math(EXPR last_want "${want_count} - 1")
  foreach(w RANGE ${last_want})
    set(pattern "${want_${w}}")
    if(pattern STREQUAL "")
      continue()
    endif()
    if(pattern STREQUAL "--")
      math(EXPR first_allowed "${group_end} + 1")
      continue()
    endif()
    set(anywhere OFF)
    if(pattern MATCHES "^~(.*)$")
      set(anywhere ON)
      set(pattern "${CMAKE_MATCH_1}")
    endif()
    set(times 1)
    if(pattern MATCHES "^([0-9]+)\\*(.*)$")
      set(times ${CMAKE_MATCH_1})
      set(pattern "${CMAKE_MATCH_2}")
    endif()
    set(found 0)
    set(start ${first_allowed})
    if(anywhere)
      set(start 0)
    endif()
    if(out_count GREATER start)
      math(EXPR last_out "${out_count} - 1")
      foreach(o RANGE ${start} ${last_out})
        if(found EQUAL times)
          break()
        endif()
        if(NOT used_${o} AND "${out_${o}}" MATCHES "^${pattern}$")
          set(used_${o} ON)
          math(EXPR found "${found} + 1")
          if(NOT anywhere AND o GREATER group_end)
            set(group_end ${o})
          endif()
        endif()
      endforeach()
    endif()
    if(found LESS times)
      string(APPEND failures "  ${times} line(s) matching '${pattern}': found ${found}\n")
    endif()
  endforeach()
endif()

if(failures)
  message(FATAL_ERROR "FAIL: the output lacks\n${failures}")
endif()
message("PASS")
