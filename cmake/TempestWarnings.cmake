# tempest_strict(<target>): warnings (and -Werror when TEMPEST_WERROR) for tempest's own code only;
# nothing here leaks into consumers' flags.
function(tempest_strict target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic
    # GCC 12 false positive on Asio's coroutine frame operator delete.
    -Wno-mismatched-new-delete
    $<$<BOOL:${TEMPEST_WERROR}>:-Werror>)
  if(TEMPEST_SANITIZE)
    target_compile_options(${target} PRIVATE -fsanitize=address,undefined -fno-omit-frame-pointer
      -fno-sanitize-recover=undefined)
    target_link_options(${target} PRIVATE -fsanitize=address,undefined)
  endif()
  if(TEMPEST_TSAN)
    # -Wno-tsan: Asio's handler recycling uses std::atomic_thread_fence, which GCC warns TSan does
    # not model; the suite runs clean without it being modelled.
    target_compile_options(${target} PRIVATE -fsanitize=thread -fno-omit-frame-pointer -Wno-tsan)
    target_link_options(${target} PRIVATE -fsanitize=thread)
  endif()
endfunction()
